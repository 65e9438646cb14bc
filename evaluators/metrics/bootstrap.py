"""A statistic of (score, wrong) pairs with its seeded percentile-bootstrap 95% interval.

The same percentile rule as moeprune.reliability.intervals.bootstrap_interval, with the resampled indices
drawn by numpy so a thousand resamples of a few hundred answers take milliseconds per statistic.
Resamples where the statistic is undefined (one class only) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Statistic = Callable[[np.ndarray, np.ndarray], float | None]
RESAMPLES = 1000


def with_interval(
    statistic: Statistic, scores: np.ndarray, wrong: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> dict:
    """{"value": statistic on all pairs, "ci95": [low, high] or None} (the card's Interval)."""
    value = statistic(scores, wrong)
    if value is None or len(scores) < 2:
        return {"value": value, "ci95": None}
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(resamples):
        picked = rng.integers(0, len(scores), len(scores))
        each = statistic(scores[picked], wrong[picked])
        if each is not None and not math.isnan(each):
            stats.append(each)
    if not stats:
        return {"value": value, "ci95": None}
    stats.sort()
    low = stats[int(0.025 * (len(stats) - 1))]
    high = stats[int(math.ceil(0.975 * (len(stats) - 1)))]
    return {"value": value, "ci95": [low, high]}
