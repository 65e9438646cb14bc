"""The study's pairwise judge: strict JSON parsing, hashed order, per-judge and pooled shares (fake judges)."""

import asyncio
import json
import re

import pytest

from evaluators.cache import ResponseCache
from evaluators.items import MCItem
from evaluators.judge import ASPECTS, judge_task, parse_verdict, variant_first, variant_side
from evaluators.judge_endpoints import JudgeEndpoint, judge_endpoints
from moeprune.errors import UserError
from tests.evaluators.endpoints import endpoint, last_turn

GOOD = {"more_hallucination": "A", "more_omission": "B", "more_repetition": "A", "more_aligned": "B"}


def test_parse_verdict_is_strict():
    assert parse_verdict(json.dumps(GOOD)) == GOOD
    assert parse_verdict("```json\n" + json.dumps(GOOD) + "\n```") == GOOD
    assert parse_verdict(json.dumps({**GOOD, "more_aligned": "b"}))["more_aligned"] == "B"
    tie = {**GOOD, "more_repetition": "tie"}
    assert parse_verdict(json.dumps(tie)) is None  # forced choice unless ties are allowed
    assert parse_verdict(json.dumps(tie), allow_tie=True)["more_repetition"] == "tie"
    for bad in (
        "",
        "A",
        "Summary A hallucinates more.",
        json.dumps(list(GOOD)),
        json.dumps({k: v for k, v in GOOD.items() if k != "more_aligned"}),
        json.dumps({**GOOD, "extra": "A"}),
        json.dumps({**GOOD, "more_omission": "C"}),
        json.dumps({**GOOD, "more_omission": 1}),
        "Sure! " + json.dumps(GOOD),
    ):
        assert parse_verdict(bad) is None, bad


def test_order_is_deterministic_per_item_and_balanced():
    ids = [f"item-{k}" for k in range(2000)]
    first = [variant_first(i, seed=7) for i in ids]
    assert first == [variant_first(i, seed=7) for i in ids]  # same id, same position, every run
    assert 0.45 < sum(first) / len(first) < 0.55  # about half the items show the variant first
    assert first != [variant_first(i, seed=8) for i in ids]  # the seed changes the draw
    assert variant_side("A", shown_first=True) == "variant" and variant_side("A", shown_first=False) == "base"
    assert variant_side("tie", shown_first=True) == "tie"


def test_judge_endpoints_pairing_and_errors():
    judges = judge_endpoints(["http://a:1", "http://b:2/v1"], ["m1", "m2"], "k", "variant")
    assert [j.label for j in judges] == ["m1@a:1", "m2@b:2"] and judges[0].api_key == "k"
    assert [j.model for j in judge_endpoints(["http://a:1", "http://b:2"], ["m"], None, "v")] == ["m", "m"]
    assert [j.model for j in judge_endpoints(["http://a:1"], None, None, "v")] == ["v"]
    assert judge_endpoints(None, None, None, "v") == []
    with pytest.raises(UserError, match="one per endpoint"):
        judge_endpoints(["http://a:1", "http://b:2", "http://c:3"], ["m1", "m2"], None, "v")
    with pytest.raises(UserError, match="named twice"):
        judge_endpoints(["http://a:1", "http://a:1"], ["m"], None, "v")
    with pytest.raises(UserError, match="without a judge endpoint"):
        judge_endpoints(None, ["m"], None, "v")


def _items(n):
    return [MCItem(f"i{k}", f"question item-{k}", {"A": "x", "B": "y"}, "A") for k in range(n)]


def test_judges_pooled_and_per_judge_with_unparseable_counted(tmp_path):
    # Judge 1 always blames Summary A for everything (and cannot answer item-3); judge 2 always blames B.
    def blame(letter, broken=None):
        def answer(request):
            if broken and broken in last_turn(request):
                return "Both look fine to me."
            other = "B" if letter == "A" else "A"
            return json.dumps(
                {
                    "more_hallucination": letter,
                    "more_omission": letter,
                    "more_repetition": letter,
                    "more_aligned": other,
                }
            )

        return answer

    items = _items(12)
    records = [{"response": "variant summary"} for _ in items]
    base_records = [{"response": "base summary"} for _ in items]
    shown_first = [variant_first(item.id, 0) for item in items]
    assert 0 < sum(shown_first) < len(items)
    with (
        endpoint(blame("A", broken="item-3\n"), model="j1") as (url1, engine1),
        endpoint(blame("B"), model="j2") as (url2, engine2),
    ):
        judges = [JudgeEndpoint(url1, "j1"), JudgeEndpoint(url2, "j2")]

        def run():
            return asyncio.run(
                judge_task(judges, ResponseCache(tmp_path / "c.jsonl"), 2, items, records, base_records, seed=0)
            )

        pooled, per_judge = run()
        # The rerun comes from the cache: each judge was asked once per item.
        assert run() == (pooled, per_judge) and len(engine1.requests) == 12 and len(engine2.requests) == 12
    one, two = per_judge[judges[0].label], per_judge[judges[1].label]
    assert one["judge_unparseable_count"]["value"] == 1 and two["judge_unparseable_count"]["value"] == 0
    parsed_first = [first for item, first in zip(items, shown_first) if item.id != "i3"]
    # Judge 1 blames A: the variant is blamed exactly when it was shown first.
    assert one["judge_variant_more_hallucination"]["value"] == pytest.approx(sum(parsed_first) / 11)
    assert two["judge_variant_more_hallucination"]["value"] == pytest.approx(1 - sum(shown_first) / 12)
    assert one["judge_variant_more_aligned"]["value"] == pytest.approx(1 - sum(parsed_first) / 11)
    blamed = sum(parsed_first) + (12 - sum(shown_first))
    assert pooled["judge_variant_more_hallucination"]["value"] == pytest.approx(blamed / 23)
    assert pooled["judge_unparseable_rate"]["value"] == pytest.approx(1 / 24)
    assert set(pooled) == set(ASPECTS.values()) | {"judge_unparseable_rate", "judge_unparseable_count"}


def test_prompt_shows_the_variant_where_the_hash_says(tmp_path):
    seen = []

    def answer(request):
        seen.append(last_turn(request))
        return json.dumps(GOOD)

    items = _items(6)
    with endpoint(answer, model="j") as (url, _):
        asyncio.run(
            judge_task(
                [JudgeEndpoint(url, "j")],
                ResponseCache(tmp_path / "c.jsonl"),
                1,
                items,
                [{"response": "VARIANT"} for _ in items],
                [{"response": "BASE"} for _ in items],
                0,
            )
        )
    for prompt in seen:
        item_id = "i" + re.search(r"item-(\d+)", prompt).group(1)
        shown_a = prompt.index("VARIANT") < prompt.index("BASE")
        assert shown_a == variant_first(item_id, 0)
        assert "no ties" in prompt
