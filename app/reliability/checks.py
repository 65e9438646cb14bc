"""Optional cross-checks of an answer: score it under the base variant, resample short answers.

Both cost extra engine calls, so they are enabled per variant or experiment
(`base_check: true`, `self_consistency: N`) and bounded like requests (their own
timeout and token cap). What is sent and how the answer's tokens are located is
`moeprune.reliability.crosscheck`, the code the evaluators calibrate `base_disagreement`
with. A check that cannot run (base down, prompt not text) is skipped, never
turned into a request error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from moeprune.reliability.crosscheck import (
    agreement,
    base_check_request,
    base_check_signals,
    base_check_values,
    consistency_request,
)
from moeprune.reliability.token_trace import TokenTrace

log = logging.getLogger("moeprune.reliability")


@dataclass(frozen=True)
class CheckLimits:
    """A check call's own bounds: a short timeout and a small token cap (MOEPRUNE_CHECK_*)."""

    timeout_s: float
    max_tokens: int


async def base_signals(
    client: httpx.AsyncClient,
    base_url: str,
    base_model: str,
    body: dict,
    trace: TokenTrace,
    chat: bool,
    prompt_tokens: int | None,
    limits: CheckLimits,
    headers: dict[str, str],
) -> dict[str, float]:
    """`base_mean_logprob` and `base_min_logprob` of the answer (and its end) under the base model, or {} when
    the check cannot run (see moeprune.reliability.crosscheck for the rule)."""
    prompt = None if chat else body.get("prompt")
    probe = base_check_request(trace.answer, messages=body["messages"] if chat else None, prompt=prompt)
    if probe is None or (chat and not prompt_tokens):
        return {}
    probe["model"] = base_model
    if body.get("cache_salt"):
        probe["cache_salt"] = body["cache_salt"]
    path = "/v1/chat/completions" if chat else "/v1/completions"
    try:
        response = await client.post(base_url + path, json=probe, headers=headers, timeout=limits.timeout_s)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("base check skipped", extra={"error": str(exc)})
        return {}
    values = base_check_values(data, trace.answer, trace.ended, prompt_tokens=prompt_tokens, prompt=prompt)
    return base_check_signals(values)


async def agreement_rate(
    client: httpx.AsyncClient,
    url: str,
    path: str,
    upstream_body: dict,
    answer: str,
    samples: int,
    limits: CheckLimits,
    headers: dict[str, str],
) -> float | None:
    """Share of `samples` fresh answers (temperature >= 0.7) that match `answer` after normalisation."""
    requested = upstream_body.get("max_tokens") or limits.max_tokens
    probe = consistency_request(upstream_body, samples, min(requested, limits.max_tokens))
    try:
        response = await client.post(url + path, json=probe, headers=headers, timeout=limits.timeout_s)
        response.raise_for_status()
        choices = response.json()["choices"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("self-consistency skipped", extra={"error": str(exc)})
        return None
    return agreement(
        [(c.get("message") or {}).get("content") if "message" in c else c.get("text") for c in choices], answer
    )
