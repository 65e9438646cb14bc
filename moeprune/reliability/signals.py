"""Per-response reliability signals from token logprobs, and the flags they raise.

One implementation shared by the evaluators (which measure how well each
signal separates wrong from right answers and calibrate a threshold) and the
gateway (which raises flags on live responses with those thresholds).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

# A token whose chosen logprob is below this counts as low-confidence
# (probability < ~0.22) for the `low_conf_share` signal.
LOW_CONFIDENCE_LOGPROB = -1.5


# Bumped whenever a signal's or p_wrong's definition changes, so that a card measured under an older one is
# not reused as if current (the demo's stamps carry it). 2: the base cross-check scores the answer's end;
# base_min_logprob. 3: p_wrong breaks the isotonic map's ties by the logistic score (risk_model.TIE_BREAK).
SIGNALS_REVISION = 3

# Every per-response signal, with the direction in which it points to a wrong answer. Flags,
# the card's signal-quality section and AUROC orientation all read this one table.
SIGNAL_DIRECTIONS: dict[str, str] = {
    "mean_logprob": "below",
    "min_logprob": "below",
    "mean_entropy": "above",
    "low_conf_share": "above",
    "base_mean_logprob": "below",
    "base_min_logprob": "below",
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
    token_logprobs: Sequence[float | None],
    top_logprobs: Sequence[Sequence[float]] | None = None,
) -> dict[str, float]:
    """Signals of one response: mean/min token logprob, mean top-k entropy, low-confidence share,
    mean top-1/top-2 margin and the answer's length in tokens.

    `token_logprobs[i]` is the logprob of the i-th generated token;
    `top_logprobs[i]` the logprobs of the top-k alternatives at that position.
    An empty response yields NaN signals (nothing to judge), never an error.
    The lists are only walked through a `SignalAccumulator`: the rule lives there, once.
    """
    accumulator = SignalAccumulator()
    add_logprob, add_alternatives = accumulator.add_logprob, accumulator.add_alternatives
    for logprob in token_logprobs:
        add_logprob(logprob)
    for tops in top_logprobs or ():
        add_alternatives(tops)
    return accumulator.signals()


class SignalAccumulator:
    """`compute_signals` fed one token at a time, holding running totals instead of the tokens.

    A stream judged at its end then costs the same few numbers at its 2,000th token as at its
    first. The result equals `compute_signals` of the same sequence bit for bit (the evaluators'
    thresholds and `p_wrong` were calibrated on those doubles): the totals are added in token
    order as `sum()` adds a list (`RunningSum`), the minimum is kept as `min()` keeps it, and the
    divisions are the same ones. Logprobs that are None or infinite are skipped as `compute_signals`
    skips them, but every token counts in `answer_tokens`; alternatives count for the entropy and
    the margin whether or not their token's own logprob was usable.
    """

    __slots__ = (
        "tokens",
        "_kept",
        "_total",
        "_minimum",
        "_low",
        "_entropies",
        "_entropy_total",
        "_margins",
        "_margin_total",
    )

    def __init__(self) -> None:
        self.tokens = 0  # every token, usable logprob or not
        self._kept = 0  # tokens whose logprob is usable (not None, finite)
        self._total = RunningSum()
        self._minimum: float = float("nan")  # read only once a logprob was kept
        self._low = 0
        self._entropies = 0
        self._entropy_total = RunningSum()
        self._margins = 0
        self._margin_total = RunningSum()

    def add(self, logprob: float | None, top_logprobs: Sequence[float] | None) -> None:
        """One token: its own logprob and its alternatives' logprobs."""
        self.add_logprob(logprob)
        self.add_alternatives(top_logprobs)

    def add_logprob(self, logprob: float | None) -> None:
        self.tokens += 1
        if logprob is None or math.isinf(logprob):
            return
        # min() keeps the first value and replaces it only by a smaller one (so a leading NaN stays).
        if not self._kept or logprob < self._minimum:
            self._minimum = logprob
        self._kept += 1
        self._total.add(logprob)
        if logprob < LOW_CONFIDENCE_LOGPROB:
            self._low += 1

    def add_alternatives(self, top_logprobs: Sequence[float] | None) -> None:
        if not top_logprobs:
            return
        entropy = top_k_entropy(top_logprobs)
        if not math.isnan(entropy):
            self._entropies += 1
            self._entropy_total.add(entropy)
        if len(top_logprobs) > 1:
            self._margins += 1
            self._margin_total.add(top_margin(top_logprobs))

    def signals(self) -> dict[str, float]:
        """The signals so far, as `compute_signals` returns them (keys in the same order)."""
        nan = float("nan")
        if not self._kept:
            return {
                "mean_logprob": nan,
                "min_logprob": nan,
                "mean_entropy": nan,
                "low_conf_share": nan,
                "mean_margin": nan,
                "answer_tokens": float(self.tokens),
            }
        return {
            "mean_logprob": self._total.value() / self._kept,
            "min_logprob": self._minimum,
            "low_conf_share": self._low / self._kept,
            "mean_entropy": self._entropy_total.value() / self._entropies if self._entropies else nan,
            "mean_margin": self._margin_total.value() / self._margins if self._margins else nan,
            "answer_tokens": float(self.tokens),
        }


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


# How this interpreter's built-in sum() adds floats, which `RunningSum` must reproduce: a plain
# running total up to 3.11; Neumaier-compensated for floats from 3.12 (ints still added plainly);
# ints compensated too from 3.14 (CPython's Python/bltinmodule.c, builtin_sum_impl).
_COMPENSATED_FLOATS = sys.version_info >= (3, 12)
_COMPENSATED_INTS = sys.version_info >= (3, 14)
_SSIZE_MIN, _SSIZE_MAX = -(2**63), 2**63 - 1  # the C int fast path's range (64-bit builds)
_INTS, _FLOATS, _GENERIC = 0, 1, 2


class RunningSum:
    """What `sum(values)` returns for the values added so far, without keeping them.

    `sum()` starts from the int 0, stays on an exact int total while the items are ints, moves to a
    float total (compensated from Python 3.12 on) at the first float, and to plain `+` for any other
    type; the signals' means divide these totals, so they are reproduced step for step, not only
    up to rounding. The values are JSON numbers here (floats, rarely ints); other types take the
    generic path as in `sum()`.
    """

    __slots__ = ("_state", "_total", "_hi", "_lo")

    def __init__(self) -> None:
        self._state = _INTS
        self._total: object = 0  # the int total, then the generic one
        self._hi = 0.0  # the float total and its compensation
        self._lo = 0.0

    def add(self, value) -> None:
        state = self._state
        if state == _FLOATS:
            if type(value) is float:
                if _COMPENSATED_FLOATS:
                    self._compensated_add(value)
                else:
                    self._hi += value
                return
            if isinstance(value, int):
                if _COMPENSATED_INTS:
                    self._compensated_add(float(value))
                    return
                if _SSIZE_MIN <= value <= _SSIZE_MAX:
                    self._hi += float(value)
                    return
            self._state, self._total = _GENERIC, self.value() + value
        elif state == _INTS:
            total = self._total + value  # type: ignore[operator]
            if type(value) in (int, bool) and _SSIZE_MIN <= value <= _SSIZE_MAX and _SSIZE_MIN <= total <= _SSIZE_MAX:
                self._total = total
            elif type(total) is float:
                self._state, self._hi, self._lo = _FLOATS, total, 0.0
            else:
                self._state, self._total = _GENERIC, total
        else:
            self._total = self._total + value  # type: ignore[operator]

    def _compensated_add(self, value: float) -> None:
        # Neumaier's improvement of Kahan summation: `_lo` collects what each addition rounded away.
        hi = self._hi
        total = hi + value
        if abs(hi) >= abs(value):
            self._lo += (hi - total) + value
        else:
            self._lo += (value - total) + hi
        self._hi = total

    def value(self):
        if self._state != _FLOATS:
            return self._total
        # The compensation is added only when non-zero and finite: it keeps -0.0 and inf/NaN totals as they are.
        if self._lo and math.isfinite(self._lo):
            return self._hi + self._lo
        return self._hi
