"""A DeepEval-style hallucination metric: does the summary contradict its source? (per item 0/1)

The study scored summaries with DeepEval's hallucination metric, the source document as
the one context: a judge decides whether the output contradicts that context, so each
item scores 0 (no contradiction) or 1. Here the judge lists the summary's factual claims,
each with a verdict against the source ("supported", "contradicted" or "not_in_source");
an item is hallucinated (1) when any claim is contradicted. The verdicts are kept in
items.jsonl so a reader can see why. Unsupported-but-not-contradicted claims are counted
separately (`judge_unsupported_claim_rate`), not as hallucinations, as in DeepEval.
A reply that is not the expected JSON is unparseable: counted, never guessed.
"""

from __future__ import annotations

import asyncio

from evaluators.client import EndpointClient, EndpointError
from evaluators.judge_endpoints import JudgeEndpoint, ask_judge, json_object
from evaluators.task_metrics import proportion

VERDICTS = ("supported", "contradicted", "not_in_source")
MAX_CLAIMS = 32
JUDGE_MAX_TOKENS = 1024

CLAIMS_PROMPT = """List every factual claim the summary makes and check each one against the source
document only (no outside knowledge).

For each claim give a verdict:
- "supported": the source states or directly implies it;
- "contradicted": the source states something that conflicts with it;
- "not_in_source": the source neither supports nor contradicts it.

Answer with one JSON object and nothing else: {{"claims": [{{"claim": "...", "verdict": "..."}}, ...]}}
(at most {max_claims} claims; an empty list when the summary makes no factual claim).

Source document:
<<<
{source}
>>>

Summary:
<<<
{summary}
>>>"""


def parse_claims(text: str | None) -> list[dict] | None:
    """[{claim, verdict}] from a strict reply, else None."""
    reply = json_object(text)
    if reply is None or set(reply) != {"claims"} or not isinstance(reply["claims"], list):
        return None
    claims = []
    for entry in reply["claims"][:MAX_CLAIMS]:
        if not isinstance(entry, dict) or not isinstance(entry.get("claim"), str):
            return None
        verdict = entry.get("verdict")
        if not isinstance(verdict, str) or verdict.strip().lower() not in VERDICTS:
            return None
        claims.append({"claim": entry["claim"], "verdict": verdict.strip().lower()})
    return claims


def item_hallucinated(claims: list[dict]) -> bool:
    return any(claim["verdict"] == "contradicted" for claim in claims)


def hallucination_metrics(records: list[dict]) -> dict:
    """Per-item hallucination share, unsupported-claim share, and the unparseable share, over judged records."""
    judged = [r for r in records if "judge_claims" in r]
    parsed = [r["judge_claims"] for r in judged if r["judge_claims"] is not None]
    claims = [claim for each in parsed for claim in each]
    return {
        "judge_hallucination_rate": proportion([item_hallucinated(each) for each in parsed]),
        "judge_unsupported_claim_rate": proportion([claim["verdict"] == "not_in_source" for claim in claims]),
        "judge_claims_unparseable_rate": proportion([r["judge_claims"] is None for r in judged]),
    }


async def judge_claims(
    judge: JudgeEndpoint, cache, concurrency: int, records: list[dict], sent: list[int] | None = None
) -> None:
    """Set `judge_claims` (the verdict list, or None when unparseable) on each summary record."""
    async with EndpointClient(
        judge.url, judge.model, api_key=judge.api_key, concurrency=concurrency, cache=cache
    ) as client:
        await client.check()

        async def ask(record):
            prompt = CLAIMS_PROMPT.format(
                max_claims=MAX_CLAIMS, source=record["source"], summary=record["response"] or "(empty)"
            )
            try:
                record["judge_claims"] = parse_claims(await ask_judge(client, prompt, JUDGE_MAX_TOKENS))
            except EndpointError:
                record["judge_claims"] = None  # refused by the judge: counted as unparseable, never guessed

        await asyncio.gather(*(ask(record) for record in records))
        if sent is not None:
            sent.append(client.sent)
