"""Optional cross-checks of an answer: score it under the base variant, resample short answers.

Both cost extra engine calls, so they are enabled per variant or experiment
(`base_check: true`, `self_consistency: N`). A check that cannot run (base
down, prompt not text) is skipped, never turned into a request error.
"""

from __future__ import annotations

import logging
import re

import httpx

from app.reliability.logprobs import TokenTrace

log = logging.getLogger("moeprune.reliability")
AGREEMENT_FLOOR = 0.5  # below this share of resamples agreeing with the answer: `inconsistent`


async def base_mean_logprob(client: httpx.AsyncClient, base_url: str, base_model: str, body: dict,
                            trace: TokenTrace, chat: bool, timeout: float) -> float | None:
    """Mean logprob of the answer's tokens under the base model (prompt logprobs of prompt + answer).

    The answer's tokens are the last `len(trace)` prompt positions: the base and
    the pruned variant share one tokenizer.
    """
    count = len(trace.token_logprobs)
    if not count or not trace.answer:
        return None
    probe = {"model": base_model, "max_tokens": 1, "prompt_logprobs": 0, "temperature": 0}
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
        response = await client.post(base_url + path, json=probe, timeout=timeout)
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
                         samples: int, timeout: float) -> float | None:
    """Share of `samples` fresh answers (temperature >= 0.7) that match `answer` after normalisation."""
    probe = {key: value for key, value in upstream_body.items()
             if key not in ("stream", "stream_options", "logprobs", "top_logprobs", "echo", "n")}
    probe.update(n=samples, temperature=max(0.7, float(upstream_body.get("temperature") or 0)))
    probe.pop("seed", None)
    try:
        response = await client.post(url + path, json=probe, timeout=timeout)
        response.raise_for_status()
        choices = response.json()["choices"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("self-consistency skipped", extra={"error": str(exc)})
        return None
    texts = [(c.get("message") or {}).get("content") if "message" in c else c.get("text") for c in choices]
    target = normalise(answer)
    return sum(normalise(text or "") == target for text in texts) / len(texts) if texts else None
