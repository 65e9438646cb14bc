"""The certificate: a threshold on `p_wrong` under which served answers are wrong at most alpha of the time.

Learn-then-Test with fixed-sequence testing. Candidate thresholds and their order
come from the *fitting* split only (quantiles of its `p_wrong` in increasing order,
starting where the fitting split finds the error most clearly below alpha). On the
separate *certification* split, threshold t is tested against the null "the error rate
among answers with p_wrong <= t exceeds alpha" with the exact binomial p-value
P(Binomial(n_t, alpha) <= k_t); the sequence walks on while p <= delta and stops at the
first threshold it cannot reject. Fixed-sequence testing controls the family-wise error
at delta, so with probability >= 1 - delta (over the draw of the certification data)
the chosen threshold's error rate among unflagged answers is <= alpha, for answers
drawn like the certification set (same variant, domain and kind of traffic).

Answers above the threshold are flagged `above_risk`; with no certifiable threshold
the domain is `uncertified` and every answer is flagged.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from moeprune.reliability.binomial import binomial_cdf, fewest_trials, upper_bound

DEFAULT_ALPHA = 0.05
DEFAULT_DELTA = 0.05
GRID_POINTS = 200
# The sequence starts where the fitting half predicts START_SHARE of the coverage of its clearest threshold.
START_SHARE = 0.8


@dataclass(frozen=True)
class CertificateResult:
    alpha: float
    delta: float
    status: str  # "certified" or "uncertified"
    threshold: float | None  # serve unflagged iff p_wrong <= threshold
    coverage: float | None  # share of certification answers served unflagged at the threshold
    n_unflagged: int
    errors_unflagged: int
    realised_error: float | None  # errors_unflagged / n_unflagged on the certification split
    error_upper: float | None  # one-sided (1 - delta) Clopper-Pearson bound on that rate
    n_calibration: int
    n_fit: int
    tested: int  # thresholds tested before the sequence stopped
    reason: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _prefix_errors(scores: Sequence[float], wrong: Sequence[bool]) -> tuple[list[float], list[int]]:
    """Scores sorted, and errors_before[i] = wrong answers among the i lowest scores."""
    ordered = sorted(zip(scores, wrong))
    errors_before = [0]
    for _, w in ordered:
        errors_before.append(errors_before[-1] + bool(w))
    return [s for s, _ in ordered], errors_before


def _p_value(
    sorted_scores: list[float], errors_before: list[int], threshold: float, alpha: float
) -> tuple[float, int, int]:
    served = bisect.bisect_right(sorted_scores, threshold)
    errors = errors_before[served]
    return binomial_cdf(errors, served, alpha), served, errors


def candidate_thresholds(
    fit_scores: Sequence[float], fit_wrong: Sequence[bool], alpha: float, points: int = GRID_POINTS
) -> list[float]:
    """The fixed sequence, from the fitting split alone: its p_wrong quantiles in increasing order,
    starting at the one the fitting split finds most clearly safe (smallest binomial p-value; the
    largest such threshold on ties), stepped back to START_SHARE of its coverage. Thresholds far below
    it have too few answers to test well, and a sequence that began there would stop at the first chance
    error."""
    sorted_fit, fit_errors = _prefix_errors(fit_scores, fit_wrong)
    if not sorted_fit:
        return []
    n = len(sorted_fit)
    grid = sorted({sorted_fit[min(n - 1, (i * n) // points)] for i in range(points)} | {sorted_fit[-1]})
    p_values = [_p_value(sorted_fit, fit_errors, t, alpha)[0] for t in grid]
    clearest = min(range(len(grid)), key=lambda i: (p_values[i], -i))
    # Start a little below it: the certifying half is a fresh draw, and a first test that fails by chance
    # stops the whole sequence. START_SHARE was chosen on synthetic data (tests/reliability), not the demo's.
    target = START_SHARE * bisect.bisect_right(sorted_fit, grid[clearest])
    start = next(i for i, t in enumerate(grid) if bisect.bisect_right(sorted_fit, t) >= target)
    return grid[start:]


def certify(
    fit_scores: Sequence[float],
    fit_wrong: Sequence[bool],
    scores: Sequence[float],
    wrong: Sequence[bool],
    alpha: float = DEFAULT_ALPHA,
    delta: float = DEFAULT_DELTA,
) -> CertificateResult:
    """Choose the threshold on the certification split (`scores`, `wrong`) by fixed-sequence testing."""
    if not 0 < alpha < 1 or not 0 < delta < 1:
        raise ValueError(f"alpha and delta must lie strictly between 0 and 1, got {alpha} and {delta}")
    if len(scores) != len(wrong):
        raise ValueError(f"{len(scores)} scores but {len(wrong)} labels")
    n = len(scores)
    grid = candidate_thresholds(fit_scores, fit_wrong, alpha)
    base: dict[str, Any] = dict(alpha=alpha, delta=delta, n_calibration=n, n_fit=len(fit_scores))
    need = fewest_trials(alpha, delta)
    if n < need:
        return CertificateResult(
            **base,
            status="uncertified",
            threshold=None,
            coverage=None,
            n_unflagged=0,
            errors_unflagged=0,
            realised_error=None,
            error_upper=None,
            tested=0,
            reason=f"{n} labelled answers; certifying alpha={alpha} at delta={delta} needs at "
            f"least {need} even with no errors",
        )
    sorted_scores, errors_before = _prefix_errors(scores, wrong)
    chosen, tested = None, 0
    for threshold in grid:
        p_value, served, k = _p_value(sorted_scores, errors_before, threshold, alpha)
        tested += 1
        if p_value > delta:
            break
        chosen = (threshold, served, k)
    if chosen is None:
        return CertificateResult(
            **base,
            status="uncertified",
            threshold=None,
            coverage=0.0,
            n_unflagged=0,
            errors_unflagged=0,
            realised_error=None,
            error_upper=None,
            tested=tested,
            reason="no threshold keeps the error among unflagged answers provably below "
            f"alpha={alpha} at confidence {1 - delta:g}: every answer is flagged",
        )
    threshold, served, k = chosen
    return CertificateResult(
        **base,
        status="certified",
        threshold=threshold,
        coverage=served / n,
        n_unflagged=served,
        errors_unflagged=k,
        realised_error=k / served,
        error_upper=upper_bound(k, served, delta),
        tested=tested,
    )
