"""The pairwise judge: strict parsing, seeded order, unparseable verdicts counted (fake judge endpoint)."""

import asyncio

from evaluators.cache import ResponseCache
from evaluators.items import MCItem
from evaluators.judge import judge_task, parse_verdict, variant_side
from evaluators.tasks import Task
from tests.evaluators.fake_openai import fake_openai_server


def test_parse_verdict_is_strict():
    assert parse_verdict("hallucination: 1\nomission: same\ngrounded: 2") == {
        "hallucination": "1", "omission": "same", "grounded": "2"}
    assert parse_verdict("Grounded: 2\nhallucination: 1\nomission: SAME\n") is not None
    for bad in ("hallucination: 1\nomission: same", "hallucination: 1\nomission: same\ngrounded: 3",
                "I think answer 1 hallucinates.\nomission: same\ngrounded: 2",
                "hallucination: 1\nhallucination: 2\ngrounded: 2", ""):
        assert parse_verdict(bad) is None, bad


def test_variant_side_undoes_the_random_order():
    assert variant_side("1", variant_first=True) == "variant"
    assert variant_side("1", variant_first=False) == "base"
    assert variant_side("same", variant_first=False) == "same"


def test_judge_task_counts_unparseable_and_maps_positions(tmp_path):
    # The judge always blames "Answer 1" for hallucinating, except on items it cannot parse.
    def answer(prompt: str) -> str:
        if "item-3" in prompt:
            return "Both are fine, I think."
        return "hallucination: 1\nomission: same\ngrounded: 2"

    items = [MCItem(f"i{k}", f"question item-{k}", {"A": "x", "B": "y"}, "A") for k in range(8)]
    records = [{"response": "A"} for _ in items]
    base_records = [{"response": "B"} for _ in items]
    task = Task("t", "jsonl", tmp_path / "t.jsonl")
    with fake_openai_server(answer, model="judge") as (url, counter):
        metrics = asyncio.run(judge_task(url, "judge", None, ResponseCache(tmp_path / "c.jsonl"), 2, task,
                                         items, records, base_records, seed=0))
        again = asyncio.run(judge_task(url, "judge", None, ResponseCache(tmp_path / "c.jsonl"), 2, task,
                                       items, records, base_records, seed=0))
    assert metrics == again and counter["requests"] == 8  # the rerun came from the cache
    assert metrics["judge_unparseable_count"]["value"] == 1
    assert metrics["judge_unparseable_rate"]["value"] == 1 / 8
    more = metrics["judge_variant_more_hallucination"]["value"]
    grounded = metrics["judge_variant_better_grounded"]["value"]
    # "1" blamed every time: the variant is blamed exactly when it was shown first, and then not grounded.
    assert 0 < more < 1 and more + grounded == 1
    assert metrics["judge_variant_more_omission"]["value"] == 0
