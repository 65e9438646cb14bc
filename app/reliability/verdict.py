"""Turn a response's token trace (and optional cross-checks) into the `reliability` object's flags and signals.

Every rule here is the evaluators' own (signals, flag comparison, refusal), so the
flags raised on live traffic are the ones `moeprune eval` calibrated. An abstention
("I don't know") is not a risk flag: it travels apart as `abstained`, because a correct
refusal of a made-up entity must not read like a possible error. A tool call is not
an answer either: it gets the same object with nothing flagged and `not_assessed`
saying why (`not_assessed_verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.reliability.policy import FlagPolicy
from moeprune.reliability.refusal import is_refusal
from moeprune.reliability.signals import raised_flags
from moeprune.reliability.token_trace import TokenTrace


def response_signals(trace: TokenTrace, extra_signals: dict[str, float] | None = None) -> dict[str, float]:
    """The raw signals (NaN where there is nothing to judge): what `p_wrong` is computed from, unrounded."""
    signals = trace.signals()
    signals.update(extra_signals or {})
    return signals


def judge_signals(answer: str, signals: dict[str, float], policy: FlagPolicy, extra_flags: Sequence[str] = ()) -> dict:
    """`{flags, abstained, signals, thresholds_source}`; NaN signals become null, the others 6 decimals."""
    thresholds = {name: policy.threshold(name) for name in policy.thresholds}
    flags = raised_flags(signals, thresholds)
    flags.extend(flag for flag in extra_flags if flag not in flags)
    clean = {name: (None if isinstance(v, float) and math.isnan(v) else round(v, 6)) for name, v in signals.items()}
    return {"flags": flags, "abstained": is_refusal(answer), "signals": clean, "thresholds_source": policy.source}


def judge(
    trace: TokenTrace,
    policy: FlagPolicy,
    extra_signals: dict[str, float] | None = None,
    extra_flags: Sequence[str] = (),
) -> dict:
    return judge_signals(trace.answer, response_signals(trace, extra_signals), policy, extra_flags)


def flags_header(reliability: dict) -> str:
    return ",".join(reliability["flags"]) or "none"


TOOL_CALL = "tool_call"  # reliability.not_assessed: the choice calls a function; there is no factual answer


def not_assessed_verdict(
    reason: str, policy: FlagPolicy, domain: str, extra_signals: dict[str, float] | None = None
) -> dict:
    """The `reliability` object of a choice that makes no claim to judge: the usual keys (an app parses it
    unchanged), token signals null, no flag, no `p_wrong` or certificate, and `not_assessed: reason`.
    No flag, so a cascade does not re-ask the base for it; the next turn, answering with the tool's
    result, is judged as usual."""
    reliability = judge_signals("", response_signals(TokenTrace(), extra_signals), policy)
    reliability.update(p_wrong=None, above_risk=False, domain=domain, certificate=None, not_assessed=reason)
    return reliability
