"""95% confidence intervals: Wilson for proportions, percentile bootstrap for the rest."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None when there are no trials."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Exact bounds at the edges (floating point would leave 1e-17 there).
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return (low, high)


def bootstrap_interval(
    values: Sequence,
    statistic: Callable[[list], float | None],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap (2.5%, 97.5%) of `statistic` over items resampled with replacement."""
    items = list(values)
    if len(items) < 2:
        return None
    rng = random.Random(seed)
    stats = []
    for _ in range(resamples):
        sample = [items[rng.randrange(len(items))] for _ in items]
        value = statistic(sample)
        if value is not None and not math.isnan(value):
            stats.append(value)
    if not stats:
        return None
    stats.sort()
    low = stats[int(0.025 * (len(stats) - 1))]
    high = stats[int(math.ceil(0.975 * (len(stats) - 1)))]
    return (low, high)
