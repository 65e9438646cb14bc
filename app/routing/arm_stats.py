"""Per-arm outcome counts of an experiment, with 95% Wilson intervals for the rates."""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

from evaluators.metrics.intervals import wilson_interval  # the one implementation (None without trials)

# Latency percentiles are computed over the most recent requests only, bounding memory.
LATENCY_WINDOW = 10_000


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class ArmStats:
    requests: int = 0
    errors: int = 0
    flags: Counter = field(default_factory=Counter)
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def record(self, status: int, latency_s: float, flags: list[str]) -> None:
        self.requests += 1
        if status >= 400:
            self.errors += 1
        else:
            self.latencies_s.append(latency_s)
        self.flags.update(set(flags))

    def summary(self, flag_names: list[str]) -> dict:
        answered = self.requests - self.errors
        latencies = list(self.latencies_s)
        rates = {}
        for flag in sorted(set(flag_names) | set(self.flags)):
            count = self.flags.get(flag, 0)
            interval = wilson_interval(count, answered)
            rates[flag] = {"count": count, "rate": count / answered if answered else None,
                           "ci95": list(interval) if interval else None}
        error_interval = wilson_interval(self.errors, self.requests)
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "error_rate_ci95": list(error_interval) if error_interval else None,
            "flags": rates,
            "latency_ms": {"p50": p50 * 1000 if p50 is not None else None,
                           "p95": p95 * 1000 if p95 is not None else None},
        }


@dataclass
class ExperimentStats:
    arms: dict[str, ArmStats]

    @classmethod
    def for_arms(cls, arm_names) -> "ExperimentStats":
        return cls({name: ArmStats() for name in arm_names})

    def record(self, arm: str, status: int, latency_s: float, flags: list[str]) -> None:
        self.arms[arm].record(status, latency_s, flags)
