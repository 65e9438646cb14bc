"""Optional cross-checks of an answer: score it under the base variant, resample short answers.

Both cost extra engine calls, so they are enabled per variant or experiment
(`base_check: true`, `self_consistency: N`). A check that cannot run (base
down, prompt not text) is skipped, never turned into a request error.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import httpx

from app.reliability.logprobs import TokenTrace

log = logging.getLogger("moeprune.reliability")
AGREEMENT_FLOOR = 0.5  # below this share of resamples agreeing with the answer: `inconsistent`
# Sampling fields a resample keeps from the client's request (everything else is the check's own).
RESAMPLE_FIELDS = ("messages", "prompt", "top_p", "top_k", "min_p", "stop", "stop_token_ids", "presence_penalty",
                   "frequency_penalty", "repetition_penalty", "logit_bias", "response_format", "chat_template_kwargs",
                   "reasoning_effort", "add_generation_prompt", "continue_final_message", "cache_salt",
                   "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output")


@dataclass(frozen=True)
class CheckLimits:
    """A check call's own bounds: a short timeout and a small token cap (MOEPRUNE_CHECK_*)."""

    timeout_s: float
    max_tokens: int


async def base_mean_logprob(client: httpx.AsyncClient, base_url: str, base_model: str, body: dict,
                            trace: TokenTrace, chat: bool, limits: CheckLimits,
                            headers: dict[str, str]) -> float | None:
    """Mean logprob of the answer's tokens under the base model (prompt logprobs of prompt + answer).

    The answer's tokens are the last `len(trace)` prompt positions: the base and
    the pruned variant share one tokenizer.
    """
    count = len(trace.token_logprobs)
    if not count or not trace.answer:
        return None
    probe = {"model": base_model, "max_tokens": 1, "prompt_logprobs": 0, "temperature": 0}
    if body.get("cache_salt"):
        probe["cache_salt"] = body["cache_salt"]
    if chat:
        probe["messages"] = [*body["messages"], {"role": "assistant", "content": trace.answer}]
        probe.update(add_generation_prompt=False, continue_final_message=True)
        path = "/v1/chat/completions"
    elif isinstance(body.get("prompt"), str):
        probe["prompt"] = body["prompt"] + trace.answer
        path = "/v1/completions"
    else:
        return None
    try:
        response = await client.post(base_url + path, json=probe, headers=headers, timeout=limits.timeout_s)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("base check skipped", extra={"error": str(exc)})
        return None
    positions = data.get("prompt_logprobs") or (data.get("choices") or [{}])[0].get("prompt_logprobs") or []
    scores = [next(iter(entry.values()))["logprob"] for entry in positions[-count:] if entry]
    return sum(scores) / len(scores) if scores else None


def normalise(answer: str) -> str:
    return re.sub(r"[\W_]+", " ", answer.lower()).strip()


async def agreement_rate(client: httpx.AsyncClient, url: str, path: str, upstream_body: dict, answer: str,
                         samples: int, limits: CheckLimits, headers: dict[str, str]) -> float | None:
    """Share of `samples` fresh answers (temperature >= 0.7) that match `answer` after normalisation."""
    probe = {key: upstream_body[key] for key in RESAMPLE_FIELDS if key in upstream_body}
    prompt = probe.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        probe["prompt"] = prompt[0]  # the verdict judges the first choice: resample its prompt only
    requested = upstream_body.get("max_tokens") or limits.max_tokens
    probe.update(model=upstream_body["model"], n=samples, max_tokens=min(requested, limits.max_tokens),
                 temperature=max(0.7, float(upstream_body.get("temperature") or 0)))
    try:
        response = await client.post(url + path, json=probe, headers=headers, timeout=limits.timeout_s)
        response.raise_for_status()
        choices = response.json()["choices"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("self-consistency skipped", extra={"error": str(exc)})
        return None
    texts = [(c.get("message") or {}).get("content") if "message" in c else c.get("text") for c in choices]
    target = normalise(answer)
    return sum(normalise(text or "") == target for text in texts) / len(texts) if texts else None
