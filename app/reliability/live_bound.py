"""The two live decisions: has feedback shown a certified pair's error rate above alpha, and has it recovered?

Labels arrive one at a time and both questions are asked after every one of
them, so a fixed-n test would be looked at again and again and its false-alarm
rate would grow with traffic. Both tests therefore spend the certificate's
delta over the sample sizes: the look at `n` labelled answers uses
`delta / (n (n + 1))`, and those levels sum to delta over every n >= 1. If the
true error rate among unflagged answers is <= alpha, the fallback trips with
probability <= delta however long the gateway runs (a union bound; no
independence between looks is needed). The price is a few more labels before
either decision than a single look would need (about 280 clean labels to
re-certify at alpha = delta = 0.05 instead of 59). How much it matters: with the true error exactly
alpha and a look after each of 600 labels, a fixed-n test at delta tripped falsely in 26% of 400
seeded runs, this rule in none (tests/app/reliability/test_live_rules.py checks <= delta).

The gauge's upper bound is the plain one-sided Clopper-Pearson bound at delta
(`moeprune.reliability.binomial.upper_bound`): what the labels say at this look,
for dashboards and the alert, not the rule that switches the fallback.
"""

from __future__ import annotations

import functools
import math

from moeprune.reliability.binomial import upper_bound


def look_level(delta: float, n: int) -> float:
    """The share of delta spent on the look at `n` labelled answers."""
    return delta / (n * (n + 1))


def at_least_tail(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) >= k), summed upward from k (a few terms past the mode suffice for any n)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    log_choose = math.lgamma(n + 1)
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(log_choose - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        total += term
        # Past the mode the terms shrink geometrically: stop once they no longer change the sum.
        if i > n * p and term < total * 1e-17:
            break
    return min(1.0, total)


def above_alpha(wrong: int, labelled: int, alpha: float, delta: float) -> bool:
    """The labels show the error rate is above alpha: the anytime lower bound exceeds it."""
    if labelled <= 0 or wrong <= labelled * alpha:
        return False  # at or below the expected count the tail is at least ~1/2: never significant
    return at_least_tail(wrong, labelled, alpha) <= look_level(delta, labelled)


def within_alpha(wrong: int, labelled: int, alpha: float, delta: float) -> bool:
    """The labels support the certificate again: the anytime upper bound is at or below alpha."""
    if labelled <= 0:
        return False
    return live_upper_bound(wrong, labelled, look_level(delta, labelled)) <= alpha


@functools.lru_cache(maxsize=4096)
def live_upper_bound(wrong: int, labelled: int, delta: float) -> float:
    """Clopper-Pearson upper bound, cached: scrapes ask again for the same counts until a label changes them."""
    return upper_bound(wrong, labelled, delta)


def labels_to_recertify(alpha: float, delta: float) -> int:
    """The fewest clean labelled answers that re-certify (zero errors among them), for messages and docs."""
    n = 1
    while (1 - alpha) ** n > look_level(delta, n):
        n += 1
    return n
