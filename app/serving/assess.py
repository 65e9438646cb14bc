"""The reliability verdict of one answer: token signals, plus the cross-checks its variant asks for."""

from __future__ import annotations

from app.core.state import GatewayState
from app.reliability.checks import AGREEMENT_FLOOR, agreement_rate, base_mean_logprob
from app.reliability.logprobs import TokenTrace
from app.reliability.verdict import judge
from app.serving.targets import Target


def enabled_checks(gateway: GatewayState, target: Target) -> tuple[bool, int]:
    variant = gateway.config.variants[target.variant]
    experiment = gateway.config.experiments.get(target.experiment)
    base_check = variant.base_check or bool(experiment and experiment.base_check)
    samples = max(variant.self_consistency, experiment.self_consistency if experiment else 0)
    return base_check and variant.base is not None, samples


async def assess(gateway: GatewayState, target: Target, upstream_body: dict, trace: TokenTrace,
                 chat: bool, completion_tokens: int) -> dict:
    base_check, samples = enabled_checks(gateway, target)
    extra_signals: dict[str, float] = {}
    extra_flags: list[str] = []
    timeout = gateway.settings.upstream_timeout_s
    if base_check:
        base = gateway.backends[gateway.config.variants[target.variant].base]
        if base.up and base.served_model:
            score = await base_mean_logprob(gateway.client, base.url, base.served_model, upstream_body, trace,
                                            chat, timeout)
            if score is not None:
                extra_signals["base_mean_logprob"] = score
    if samples and 0 < completion_tokens <= gateway.settings.short_answer_tokens:
        backend = gateway.backends[target.variant]
        path = "/v1/chat/completions" if chat else "/v1/completions"
        agreement = await agreement_rate(gateway.client, backend.url, path, upstream_body, trace.answer, samples,
                                         timeout)
        if agreement is not None:
            extra_signals["agreement"] = agreement
            if agreement < AGREEMENT_FLOOR:
                extra_flags.append("inconsistent")
    return judge(trace, gateway.policies[target.variant], extra_signals, extra_flags)
