"""Exact binomial tails and bounds (pure Python: the gateway re-checks certificates live without numpy).

The certificate's guarantee and the live re-check both rest on one statement: if the
true error rate among unflagged answers were above alpha, seeing `k` or fewer errors in
`n` such answers would happen with probability at most `binomial_cdf(k, n, alpha)`.
"""

from __future__ import annotations

import math


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), summed in log space (exact up to float rounding for any n)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k + 1)
    ]
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in terms))


def upper_bound(k: int, n: int, delta: float) -> float:
    """Clopper-Pearson one-sided upper confidence bound on a rate: k events in n trials, confidence 1 - delta.

    The smallest p with P(Binomial(n, p) <= k) <= delta (bisection to 1e-10); 1.0 without trials.
    """
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    low, high = k / n, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if binomial_cdf(k, n, mid) > delta:
            low = mid
        else:
            high = mid
    return high


def fewest_trials(alpha: float, delta: float) -> int:
    """The fewest answers that can certify a rate <= alpha at confidence 1 - delta (zero errors among them)."""
    return math.ceil(math.log(delta) / math.log1p(-alpha))
