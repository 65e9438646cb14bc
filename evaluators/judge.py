"""Pairwise judge: is the variant's answer worse than the base's? (optional, `--judge-endpoint`)

For every item the judge sees the question and the two answers as "Answer 1"
and "Answer 2", in an order drawn from a seeded RNG (position bias cancels
out and the run is reproducible). It must reply with exactly three lines:

    hallucination: 1|2|same
    omission: 1|2|same
    grounded: 1|2|same

(which answer states more unsupported or false facts; which leaves out more of
what was asked; which is better grounded in the question's facts). Anything
else is an unparseable verdict: counted and reported, never guessed.
"""

from __future__ import annotations

import asyncio
import random
import re

from evaluators.client import EndpointClient
from evaluators.task_metrics import proportion

ASPECTS = ("hallucination", "omission", "grounded")
VERDICT_LINE = re.compile(r"^\s*(hallucination|omission|grounded)\s*:\s*(1|2|same)\s*$", re.IGNORECASE)

JUDGE_PROMPT = """You compare two answers to the same question.
Question:
{question}

Answer 1:
{first}

Answer 2:
{second}

Reply with exactly three lines and nothing else:
hallucination: 1, 2 or same (which answer states more false or unsupported facts)
omission: 1, 2 or same (which answer leaves out more of what was asked)
grounded: 1, 2 or same (which answer is better grounded in the question's facts)"""


def parse_verdict(text: str) -> dict[str, str] | None:
    """{aspect: "1"|"2"|"same"} when the reply is exactly the three lines (any order), else None."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    if len(lines) != len(ASPECTS):
        return None
    verdict = {}
    for line in lines:
        match = VERDICT_LINE.match(line)
        if not match or match.group(1).lower() in verdict:
            return None
        verdict[match.group(1).lower()] = match.group(2).lower()
    return verdict


def variant_side(verdict: str, variant_first: bool) -> str:
    """Map "1"/"2"/"same" to "variant"/"base"/"same"."""
    if verdict == "same":
        return "same"
    return "variant" if (verdict == "1") == variant_first else "base"


def question_text(item) -> str:
    if hasattr(item, "options"):
        from evaluators.prompts import render_mc_prompt

        return render_mc_prompt(item.question, item.options)
    return item.source


async def judge_task(endpoint, model, api_key, cache, concurrency, task, items, records, base_records,
                     seed, sent: list[int] | None = None) -> dict:
    """Judge metrics for one task: shares of parsed verdicts against the variant, and the unparseable share."""
    rng = random.Random(f"{seed}:{task.name}")
    orders = [rng.random() < 0.5 for _ in items]
    async with EndpointClient(endpoint, model, api_key=api_key, concurrency=concurrency, cache=cache) as judge:
        await judge.check()

        async def ask(item, record, base_record, variant_first):
            first, second = ((record, base_record) if variant_first else (base_record, record))
            prompt = JUDGE_PROMPT.format(question=question_text(item), first=first["response"] or "(empty)",
                                         second=second["response"] or "(empty)")
            response = await judge.post("chat/completions", {
                "messages": [{"role": "user", "content": prompt}], "max_tokens": 64, "temperature": 0})
            return parse_verdict(response["choices"][0].get("message", {}).get("content") or "")

        verdicts = await asyncio.gather(*(ask(*args) for args in zip(items, records, base_records, orders)))
        if sent is not None:
            sent.append(judge.sent)  # requests that reached the judge, for run_info.json
    parsed = [(v, first) for v, first in zip(verdicts, orders) if v is not None]
    metrics = {"judge_unparseable_rate": proportion([v is None for v in verdicts])}
    sides = {aspect: [variant_side(v[aspect], first) for v, first in parsed] for aspect in ASPECTS}
    metrics["judge_variant_more_hallucination"] = proportion([s == "variant" for s in sides["hallucination"]])
    metrics["judge_variant_more_omission"] = proportion([s == "variant" for s in sides["omission"]])
    metrics["judge_variant_better_grounded"] = proportion([s == "variant" for s in sides["grounded"]])
    metrics["judge_unparseable_count"] = {"value": sum(v is None for v in verdicts), "ci95": None}
    return metrics
