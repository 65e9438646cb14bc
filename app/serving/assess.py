"""The reliability verdict of one answer: token signals, the cross-checks its variant asks for, and the
certificate's decision (`p_wrong` against the certified threshold of the prompt's domain).

The cross-checks are extra engine calls the gateway makes on the client's
behalf, so each one is bounded like a request: it takes slots of the engine
it calls (skipped when that engine is full), has its own short timeout and
token cap, and is skipped for prompts too long for prompt logprobs.
"""

from __future__ import annotations

import logging

import httpx

from app.guard.prompt_text import prompt_text
from app.reliability.certified import certified_verdict
from app.reliability.checks import CheckLimits, agreement_rate, base_signals
from app.reliability.verdict import TOOL_CALL, judge_signals, not_assessed_verdict, response_signals
from app.serving.bounds import prompt_chars
from app.serving.targets import Target
from app.state import GatewayState
from moeprune.reliability.crosscheck import AGREEMENT_FLOOR
from moeprune.reliability.token_trace import TokenTrace

log = logging.getLogger("moeprune.reliability")


def enabled_checks(gateway: GatewayState, target: Target) -> tuple[bool, int]:
    variant = gateway.config.variants[target.variant]
    experiment = gateway.config.experiments.get(target.experiment)
    base_check = variant.base_check_on or bool(experiment and experiment.base_check)
    samples = max(variant.self_consistency, experiment.self_consistency if experiment else 0)
    return base_check and variant.base is not None, samples


def _client(gateway: GatewayState) -> httpx.AsyncClient:
    if gateway.client is None:  # set by the app's lifespan (app/main.py) before the first request
        raise RuntimeError("the gateway's engine client is not set up")
    return gateway.client


async def _base_check(
    gateway: GatewayState,
    target: Target,
    upstream_body: dict,
    trace: TokenTrace,
    chat: bool,
    prompt_tokens: int,
    limits: CheckLimits,
) -> dict[str, float]:
    base_name = gateway.config.variants[target.variant].base
    if base_name is None:  # checks_for() only asks for a base check when the variant names its base
        return {}
    base = gateway.backends[base_name]
    if not (base.up and base.served_model):
        return {}
    if prompt_chars(upstream_body, chat) > gateway.settings.max_echo_prompt_chars:
        return {}  # prompt logprobs over a long prompt: the memory blow-up the echo bound prevents
    slots = gateway.admission.try_admit_check(base, 1)
    if slots is None:
        log.warning("base check skipped: the base engine is full", extra={"variant": base.variant})
        return {}
    try:
        path = "/v1/chat/completions" if chat else "/v1/completions"
        with gateway.spans.engine_call(base.variant, path, "base_check"):
            return await base_signals(
                _client(gateway),
                base.url,
                base.served_model,
                upstream_body,
                trace,
                chat,
                prompt_tokens,
                limits,
                base.upstream_headers(),
            )
    finally:
        slots.release()


async def _self_consistency(
    gateway: GatewayState,
    target: Target,
    upstream_body: dict,
    answer: str,
    chat: bool,
    samples: int,
    limits: CheckLimits,
) -> float | None:
    backend = gateway.backends[target.variant]
    slots = gateway.admission.try_admit_check(backend, samples)
    if slots is None:
        log.warning("self-consistency skipped: the engine is full", extra={"variant": backend.variant})
        return None
    path = "/v1/chat/completions" if chat else "/v1/completions"
    try:
        with gateway.spans.engine_call(backend.variant, path, "self_consistency"):
            return await agreement_rate(
                _client(gateway), backend.url, path, upstream_body, answer, samples, limits, backend.upstream_headers()
            )
    finally:
        slots.release()


async def assess(
    gateway: GatewayState,
    target: Target,
    upstream_body: dict,
    trace: TokenTrace,
    chat: bool,
    completion_tokens: int,
    prompt_tokens: int = 0,
) -> dict:
    """The `reliability` object; `prompt_tokens` is the variant's own count (where the answer starts)."""
    base_check, samples = enabled_checks(gateway, target)
    certification = gateway.certification[target.variant]
    gate_score, domain = certification.split.assign(prompt_text(upstream_body, chat))
    extra_signals: dict[str, float] = {} if gate_score is None else {"gate_score": gate_score}
    if trace.tool_call:  # function arguments, not an answer: no checks run, nothing is flagged
        return not_assessed_verdict(TOOL_CALL, gateway.policies[target.variant], domain, extra_signals)
    extra_flags: list[str] = []
    limits = CheckLimits(gateway.settings.check_timeout_s, gateway.settings.check_max_tokens)
    if base_check:
        extra_signals.update(await _base_check(gateway, target, upstream_body, trace, chat, prompt_tokens, limits))
    if samples and 0 < completion_tokens <= gateway.settings.short_answer_tokens:
        agreement = await _self_consistency(gateway, target, upstream_body, trace.answer, chat, samples, limits)
        if agreement is not None:
            extra_signals["agreement"] = agreement
            if agreement < AGREEMENT_FLOOR:
                extra_flags.append("inconsistent")
    signals = response_signals(trace, extra_signals)
    verdict = certified_verdict(
        signals, certification.certificates, domain, fallback=gateway.live.fallback_active(target.variant, domain)
    )
    reliability = judge_signals(trace.answer, signals, gateway.policies[target.variant], extra_flags)
    reliability["flags"].extend(verdict.flags)
    reliability.update(verdict.fields)
    return reliability
