"""Per-arm statistics from the stored counter totals: rates with 95% Wilson intervals, latency, outcomes.

Counter names (a fixed set per arm, see app/experiments/schema.py): `requests`,
`errors` (5xx: the arm failed), `client_errors` (4xx, 499 included: the request's fault), `answered`,
`flag:NAME`, `latency_le:BOUND` (answered requests whose
latency fell in the histogram bucket ending at BOUND seconds, `inf` last),
`latency_sum`, `feedback`, `feedback_sum`, `feedback_good`, `feedback_bad`,
`feedback_score`.
"""

from __future__ import annotations

import math

from app.experiments.config import DECIDABLE_FLAGS
from app.experiments.sequential import ArmCounts
from app.metrics import DURATION_BUCKETS
from moeprune.reliability.intervals import Z95, wilson_interval  # the one implementation (None without trials)

# Flags every arm reports (with a zero count when never raised), so arms compare side by side.
REPORTED_FLAGS = DECIDABLE_FLAGS
# The gateway's request-latency buckets, plus finer ones below 50 ms (short cached answers, stub engines).
LATENCY_BOUNDS = (0.005, 0.01, 0.025, *(float(bound) for bound in DURATION_BUCKETS), math.inf)


def latency_counter(seconds: float) -> str:
    """The histogram counter a latency lands in."""
    for bound in LATENCY_BOUNDS:
        if seconds <= bound:
            return f"latency_le:{bound:g}"
    return "latency_le:inf"


def _interval(successes: float, n: float) -> list[float] | None:
    interval = wilson_interval(successes, int(n))
    return list(interval) if interval else None


def _rate(count: float, n: float) -> dict:
    return {"count": int(count), "rate": count / n if n else None, "ci95": _interval(count, n)}


def histogram_quantile(buckets: list[tuple[float, float]], rank: float) -> float | None:
    """The value at `rank` (0..n) of a histogram [(upper bound, count)], interpolated inside its bucket
    (as Prometheus does); the last finite bound for ranks in the open-ended bucket."""
    total = sum(count for _, count in buckets)
    if total <= 0:
        return None
    seen, lower = 0.0, 0.0
    finite = [bound for bound, _ in buckets if math.isfinite(bound)]
    for bound, count in buckets:
        if count and seen + count >= rank:
            if not math.isfinite(bound):
                return finite[-1]
            return lower + (bound - lower) * max(0.0, rank - seen) / count
        seen += count
        if math.isfinite(bound):
            lower = bound
    return finite[-1]


def latency_summary(counters: dict[str, float]) -> dict:
    """Mean, p50 and p95 in ms; the percentiles with 95% intervals from the binomial law of the order
    statistic (ranks n*q -/+ 1.96 sqrt(n q (1 - q)), read through the same histogram)."""
    buckets = [(bound, counters.get(f"latency_le:{bound:g}", 0.0)) for bound in LATENCY_BOUNDS]
    n = sum(count for _, count in buckets)
    summary: dict = {"n": int(n), "mean": counters.get("latency_sum", 0.0) / n * 1000 if n else None}
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        point = histogram_quantile(buckets, q * n)
        spread = Z95 * math.sqrt(n * q * (1 - q))
        low = histogram_quantile(buckets, max(0.0, q * n - spread))
        high = histogram_quantile(buckets, min(n, q * n + spread))
        summary[name] = point * 1000 if point is not None else None
        # low and high read the same histogram as point: None exactly when it is (no values)
        summary[f"{name}_ci95"] = [low * 1000, high * 1000] if low is not None and high is not None else None
    return summary


def outcome_counts(counters: dict[str, float]) -> ArmCounts:
    return ArmCounts(counters.get("feedback", 0.0), counters.get("feedback_sum", 0.0))


def flag_counts(counters: dict[str, float], flag: str) -> ArmCounts:
    return ArmCounts(counters.get("answered", 0.0), counters.get(f"flag:{flag}", 0.0))


def arm_summary(counters: dict[str, float], flag_names=REPORTED_FLAGS) -> dict:
    requests, errors = counters.get("requests", 0.0), counters.get("errors", 0.0)
    answered = counters.get("answered", 0.0)
    seen = {name.split(":", 1)[1] for name in counters if name.startswith("flag:")}
    outcome = outcome_counts(counters)
    return {
        "requests": int(requests),
        "errors": int(errors),
        "error_rate": errors / requests if requests else None,
        "error_rate_ci95": _interval(errors, requests),
        # Counted apart: a malformed request says nothing about the arm (not in `errors` nor `error_rate`).
        "client_errors": int(counters.get("client_errors", 0.0)),
        "flags": {flag: _rate(counters.get(f"flag:{flag}", 0.0), answered) for flag in sorted({*flag_names, *seen})},
        "latency_ms": latency_summary(counters),
        "outcome": {
            "n": int(outcome.n),
            "mean": outcome.mean,
            "ci95": _interval(outcome.total, outcome.n),
            "good": int(counters.get("feedback_good", 0.0)),
            "bad": int(counters.get("feedback_bad", 0.0)),
            "scores": int(counters.get("feedback_score", 0.0)),
        },
    }
