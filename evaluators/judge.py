"""The study's pairwise judge: is the pruned variant's summary worse than the base's on the same source?

For every item a judge sees the source and the two summaries as "Summary A" and
"Summary B" and must answer four forced choices, as the study's instrument does:
which summary has MORE hallucination (content the source does not support), MORE
omission of crucial information, MORE repetition, and which is MORE aligned with the
source. The position of the variant comes from a seeded hash of the item id, so each
item is shown the same way in every run and about half the items show the variant
first (position bias cancels out). The reply must be one JSON object with exactly the
four keys and "A"/"B" values ("tie" too only with `allow_tie`); anything else, and a
request the judge endpoint refused, is unparseable: counted and reported, never guessed.

With several judges (`--judge-endpoint` repeated), each judge's shares are kept in the
task's `judges` section and the pooled shares (all parsed verdicts of all judges) are
the task's metrics.
"""

from __future__ import annotations

import asyncio
import hashlib

from evaluators.client import EndpointClient, EndpointError
from evaluators.judge_endpoints import JudgeEndpoint, ask_judge, json_object
from evaluators.task_metrics import proportion

# Reply key -> metric name (the share of parsed verdicts that chose the variant).
ASPECTS = {
    "more_hallucination": "judge_variant_more_hallucination",
    "more_omission": "judge_variant_more_omission",
    "more_repetition": "judge_variant_more_repetition",
    "more_aligned": "judge_variant_more_aligned",
}
JUDGE_MAX_TOKENS = 128

JUDGE_PROMPT = """Compare two summaries of the same source document. Judge support only against the
source below; do not use outside knowledge, and be strict about factual support.

1. more_hallucination: which summary contains MORE content that the source does not support?
2. more_omission: which summary leaves out MORE of the source's crucial information?
3. more_repetition: which summary repeats itself MORE?
4. more_aligned: which summary is MORE faithful in meaning to the source?

Answer with one JSON object and nothing else, with exactly the keys more_hallucination,
more_omission, more_repetition, more_aligned, each {choices}.

Source document:
<<<
{source}
>>>

Summary A:
<<<
{first}
>>>

Summary B:
<<<
{second}
>>>"""


def variant_first(item_id: str, seed: int) -> bool:
    """Whether the variant is shown as Summary A: one bit of sha256(seed:id), the same in every run."""
    return hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[0] & 1 == 0


def parse_verdict(text: str | None, allow_tie: bool = False) -> dict[str, str] | None:
    """{aspect: "A"|"B"|"tie"} when the reply is exactly the four-key object, else None."""
    reply = json_object(text)
    if reply is None or set(reply) != set(ASPECTS):
        return None
    allowed = {"A", "B", "TIE"} if allow_tie else {"A", "B"}
    verdict = {}
    for key, value in reply.items():
        choice = value.strip().upper() if isinstance(value, str) else None
        if choice not in allowed:
            return None
        verdict[key] = "tie" if choice == "TIE" else choice
    return verdict


def variant_side(choice: str, shown_first: bool) -> str:
    """Map "A"/"B"/"tie" to "variant"/"base"/"tie" given where the variant was shown."""
    if choice == "tie":
        return "tie"
    return "variant" if (choice == "A") == shown_first else "base"


def source_text(item) -> str:
    """The document the summaries are judged against (a question and its options for MC items)."""
    if hasattr(item, "options"):
        from evaluators.prompts import render_mc_prompt

        return render_mc_prompt(item.question, item.options)
    return item.source


def shares(verdicts: list[tuple[dict | None, bool]]) -> dict:
    """Per-aspect share of parsed verdicts that chose the variant, plus the unparseable rate and count."""
    parsed = [(verdict, first) for verdict, first in verdicts if verdict is not None]
    metrics = {
        name: proportion([variant_side(verdict[key], first) == "variant" for verdict, first in parsed])
        for key, name in ASPECTS.items()
    }
    metrics["judge_unparseable_rate"] = proportion([verdict is None for verdict, _ in verdicts])
    metrics["judge_unparseable_count"] = {"value": sum(verdict is None for verdict, _ in verdicts), "ci95": None}
    return metrics


async def judge_task(
    judges: list[JudgeEndpoint],
    cache,
    concurrency: int,
    items,
    records,
    base_records,
    seed: int,
    *,
    allow_tie: bool = False,
    sent: list[int] | None = None,
) -> tuple[dict, dict]:
    """(pooled metrics, {judge label: its metrics}) for one task's variant-vs-base summaries."""
    orders = [variant_first(item.id, seed) for item in items]
    choices = (
        '"A" or "B" or "tie" (tie only if they are truly indistinguishable)'
        if allow_tie
        else '"A" or "B" (you must choose one; no ties)'
    )
    per_judge, pooled = {}, []
    for judge in judges:
        async with EndpointClient(
            judge.url, judge.model, api_key=judge.api_key, concurrency=concurrency, cache=cache
        ) as client:
            await client.check()

            async def ask(item, record, base_record, first):
                a, b = (record, base_record) if first else (base_record, record)
                prompt = JUDGE_PROMPT.format(
                    choices=choices,
                    source=source_text(item),
                    first=a["response"] or "(empty)",
                    second=b["response"] or "(empty)",
                )
                try:
                    reply = await ask_judge(client, prompt, JUDGE_MAX_TOKENS)
                except EndpointError:
                    # The judge refused this one (e.g. the prompt exceeds its context): no verdict, counted
                    # with the unparseable ones; one refused item never stops the run.
                    return None, first
                return parse_verdict(reply, allow_tie), first

            verdicts = await asyncio.gather(*(ask(*args) for args in zip(items, records, base_records, orders)))
            if sent is not None:
                sent.append(client.sent)
        per_judge[judge.label] = shares(verdicts)
        pooled += verdicts
    return shares(pooled), per_judge
