"""Per-response reliability signals from token logprobs, and the flags they raise.

One implementation shared by the evaluators (which measure how well each
signal separates wrong from right answers and calibrate a threshold) and the
gateway (which raises flags on live responses with those thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# A token whose chosen logprob is below this counts as low-confidence
# (probability < ~0.22) for the `low_conf_share` signal.
LOW_CONFIDENCE_LOGPROB = -1.5


# Every per-response signal, with the direction in which it points to a wrong answer. Flags,
# the card's signal-quality section and AUROC orientation all read this one table.
SIGNAL_DIRECTIONS: dict[str, str] = {
    "mean_logprob": "below",
    "min_logprob": "below",
    "mean_entropy": "above",
    "low_conf_share": "above",
    "base_mean_logprob": "below",
    "mean_margin": "below",
    "answer_tokens": "above",
    "gate_score": "below",
}


def past_threshold(value: float, threshold: float, direction: str) -> bool:
    """The one flag comparison: strictly below/above the threshold (used by flags and calibration alike)."""
    return value < threshold if direction == "below" else value > threshold


@dataclass(frozen=True)
class FlagRule:
    """A flag is raised when `signal` is past `threshold` in the signal's wrong-answer direction."""

    signal: str
    default_threshold: float

    @property
    def direction(self) -> str:  # "below" or "above"
        return SIGNAL_DIRECTIONS[self.signal]

    def raised(self, value: float | None, threshold: float) -> bool:
        if value is None or math.isnan(value):
            return False
        return past_threshold(value, threshold, self.direction)


# Documented defaults, used when a variant has no report card. Chosen so that an
# answer whose average token probability is below ~0.37 (mean logprob < -1), or
# that contains a token below ~2% probability, is flagged.
FLAG_RULES: dict[str, FlagRule] = {
    "low_confidence": FlagRule("mean_logprob", -1.0),
    "uncertain_span": FlagRule("min_logprob", -4.0),
    "high_entropy": FlagRule("mean_entropy", 1.5),
    "base_disagreement": FlagRule("base_mean_logprob", -2.0),
}


def top_k_entropy(top_logprobs: Sequence[float]) -> float:
    """Entropy (nats) of the renormalised top-k distribution at one position."""
    if not top_logprobs:
        return float("nan")
    peak = max(top_logprobs)
    weights = [math.exp(lp - peak) for lp in top_logprobs]
    total = sum(weights)
    return -sum((w / total) * math.log(w / total) for w in weights if w > 0)


def compute_signals(
    token_logprobs: Sequence[float],
    top_logprobs: Sequence[Sequence[float]] | None = None,
) -> dict[str, float]:
    """Signals of one response: mean/min token logprob, mean top-k entropy, low-confidence share,
    mean top-1/top-2 margin and the answer's length in tokens.

    `token_logprobs[i]` is the logprob of the i-th generated token;
    `top_logprobs[i]` the logprobs of the top-k alternatives at that position.
    An empty response yields NaN signals (nothing to judge), never an error.
    """
    values = [lp for lp in token_logprobs if lp is not None and not math.isinf(lp)]
    nan = float("nan")
    if not values:
        return {
            "mean_logprob": nan,
            "min_logprob": nan,
            "mean_entropy": nan,
            "low_conf_share": nan,
            "mean_margin": nan,
            "answer_tokens": float(len(token_logprobs)),
        }
    signals = {
        "mean_logprob": sum(values) / len(values),
        "min_logprob": min(values),
        "low_conf_share": sum(lp < LOW_CONFIDENCE_LOGPROB for lp in values) / len(values),
        "mean_entropy": nan,
        "mean_margin": nan,
        "answer_tokens": float(len(token_logprobs)),
    }
    if top_logprobs:
        entropies = [top_k_entropy(list(tops)) for tops in top_logprobs if tops]
        entropies = [e for e in entropies if not math.isnan(e)]
        if entropies:
            signals["mean_entropy"] = sum(entropies) / len(entropies)
        margins = [top_margin(list(tops)) for tops in top_logprobs if tops and len(tops) > 1]
        if margins:
            signals["mean_margin"] = sum(margins) / len(margins)
    return signals


def top_margin(top_logprobs: Sequence[float]) -> float:
    """Logprob gap between the two most likely tokens at one position (small: the model hesitated)."""
    first, second = sorted(top_logprobs, reverse=True)[:2]
    return first - second


def raised_flags(signals: dict[str, float], thresholds: dict[str, float] | None = None) -> list[str]:
    """Names of the threshold flags these signals raise (report-card thresholds override defaults)."""
    thresholds = thresholds or {}
    flags = []
    for name, rule in FLAG_RULES.items():
        threshold = thresholds.get(name, rule.default_threshold)
        if rule.raised(signals.get(rule.signal), threshold):
            flags.append(name)
    return flags
