"""Turn a response's token trace (and optional cross-checks) into the `reliability` object.

Every rule here is the evaluators' own (signals, flag comparison, refusal), so the
flags raised on live traffic are the ones `moeprune eval` calibrated.
"""

from __future__ import annotations

import math

from app.reliability.policy import FlagPolicy
from moeprune.reliability.refusal import is_refusal
from moeprune.reliability.signals import compute_signals, raised_flags
from moeprune.reliability.token_trace import TokenTrace


def judge(trace: TokenTrace, policy: FlagPolicy, extra_signals: dict[str, float] | None = None,
          extra_flags: list[str] = ()) -> dict:
    """`{flags, signals, thresholds_source}`; NaN signals (nothing to judge) become null."""
    signals = compute_signals(trace.token_logprobs, trace.top_logprobs)
    signals.update(extra_signals or {})
    thresholds = {name: policy.threshold(name) for name in policy.thresholds}
    flags = raised_flags(signals, thresholds)
    if is_refusal(trace.answer):
        flags.append("refusal")
    flags.extend(flag for flag in extra_flags if flag not in flags)
    clean = {name: (None if isinstance(v, float) and math.isnan(v) else round(v, 6)) for name, v in signals.items()}
    return {"flags": flags, "signals": clean, "thresholds_source": policy.source}


def flags_header(reliability: dict) -> str:
    return ",".join(reliability["flags"]) or "none"
