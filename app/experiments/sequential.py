"""An anytime-valid confidence sequence for the difference of two arms' means, and the verdict it gives.

Every metric here is a mean of values in [0, 1] (an outcome score or good=1/bad=0,
a flag raised or not, an error or not). For an arm with n values summing to s,
the variance used is the largest any [0, 1] variable with that mean can have,
v = m(1 - m) with m = (s + 1) / (n + 2) (one pseudo-success and one
pseudo-failure, so a run of zeros never claims zero variance). The estimate of
arm - control, d = s_a/n_a - s_c/n_c, then has variance s2 = v_a/n_a + v_c/n_c,
and I = 1/s2 is the information gathered so far.

The boundary is Robbins' normal mixture (Howard, Ramdas, McAuliffe and Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", 2021): with
the score process S = (d - true difference) * I behaving like a Brownian motion
in information time, mixing exp(lambda S - lambda^2 I / 2) over lambda ~ N(0, 1/rho)
gives a nonnegative martingale, and Ville's inequality makes

    |d - true difference| <= radius(I) = sqrt((I + rho) * ln((I + rho) / (rho * alpha^2))) / I

hold at every I simultaneously with probability at least 1 - alpha. So the
interval may be read after every observation without inflating alpha. The
Gaussian step is the central-limit approximation (valid as counts grow; no
verdict is given before MIN_PER_ARM values per arm). rho is fixed by the
configuration alone (margin and alpha, never the data): it makes the boundary
tightest where it first can separate a true difference of 0 from the margin.

The functions use only arithmetic and the `log`/`sqrt` they are given, so the
tests run this very code vectorised with numpy over thousands of simulated runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

MIN_PER_ARM = 30  # below this many values in either arm, no verdict (the normal approximation is poor)
NON_INFERIOR, INFERIOR, INCONCLUSIVE = "non_inferior", "inferior", "inconclusive"


def bounded_variance(total, n):
    """The largest variance of a [0, 1] variable with the (smoothed) mean (total + 1) / (n + 2)."""
    mean = (total + 1.0) / (n + 2.0)
    return mean * (1.0 - mean)


def radius(info, rho, alpha, log=math.log, sqrt=math.sqrt):
    """Half-width of the two-sided normal-mixture confidence sequence at information `info` (= 1/variance)."""
    return sqrt((info + rho) * log((info + rho) / (rho * alpha * alpha))) / info


def _argmin(function, low: float, high: float, steps: int = 80) -> float:
    """Golden-section search of a unimodal function of log(x) on [low, high]."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = math.log(low), math.log(high)
    for _ in range(steps):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if function(math.exp(c)) < function(math.exp(d)):
            b = d
        else:
            a = c
    return math.exp((a + b) / 2)


def information_for(target_radius: float, rho: float, alpha: float) -> float:
    """The smallest information at which the radius is at most `target_radius` (the radius falls with I)."""
    low, high = 1e-6, 1.0
    while radius(high, rho, alpha) > target_radius:
        high *= 2
        if high > 1e15:
            return math.inf
    for _ in range(100):
        middle = math.sqrt(low * high)
        if radius(middle, rho, alpha) > target_radius:
            low = middle
        else:
            high = middle
    return high


@lru_cache(maxsize=256)
def tuned_rho(margin: float, alpha: float) -> float:
    """rho that makes the boundary tightest where its radius reaches `margin` (a fixed point, found once)."""
    if margin <= 0:
        margin = 0.01  # a zero margin needs some scale: tune for a one-point difference
    info = (3.0 / margin) ** 2
    rho = info
    for _ in range(8):
        rho = _argmin(lambda candidate, info=info: radius(info, candidate, alpha), info * 1e-4, info * 1e2)
        info = information_for(margin, rho, alpha)
    return rho


def verdict_code(worse_estimate, worse_radius, margin):
    """+1 non-inferior (worse by less than margin), -1 inferior (worse by more), 0 inconclusive.

    `worse_estimate` is how much worse the arm looks than control (positive = worse)."""
    return (worse_estimate + worse_radius < margin) * 1 - (worse_estimate - worse_radius > margin) * 1


@dataclass(frozen=True)
class ArmCounts:
    """n values of a [0, 1] metric in one arm, summing to `total`."""

    n: float
    total: float

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


def decide(
    metric: str, arm: ArmCounts, control: ArmCounts, margin: float, alpha: float, higher_is_better: bool
) -> dict:
    """The non-inferiority verdict of `arm` against `control` on one metric (`decision` in the API)."""
    base = {
        "metric": metric,
        "margin": margin,
        "alpha": alpha,
        "better": "higher" if higher_is_better else "lower",
        "n": {"arm": int(arm.n), "control": int(control.n)},
    }
    if arm.n < MIN_PER_ARM or control.n < MIN_PER_ARM:
        return {
            **base,
            "status": INCONCLUSIVE,
            "estimate": _difference(arm, control),
            "interval": None,
            "needed_n_estimate": None,
            "reason": f"fewer than {MIN_PER_ARM} values in an arm",
        }
    difference = _difference(arm, control)  # arm - control, in the metric's own units
    assert difference is not None  # both arms hold at least MIN_PER_ARM values
    worse = -difference if higher_is_better else difference
    var_arm, var_control = bounded_variance(arm.total, arm.n), bounded_variance(control.total, control.n)
    info = 1.0 / (var_arm / arm.n + var_control / control.n)
    rho = tuned_rho(margin, alpha)
    half = radius(info, rho, alpha)
    code = verdict_code(worse, half, margin)
    status = {1: NON_INFERIOR, -1: INFERIOR, 0: INCONCLUSIVE}[code]
    share = arm.n / (arm.n + control.n)
    needed = int(arm.n + control.n) if code else needed_total(worse, margin, var_arm, var_control, share, rho, alpha)
    # A difference of two rates lies in [-1, 1]: the interval is clipped there (the verdict is unaffected).
    interval = [max(-1.0, difference - half), min(1.0, difference + half)]
    return {**base, "status": status, "estimate": difference, "interval": interval, "needed_n_estimate": needed}


def needed_total(
    worse: float, margin: float, var_arm: float, var_control: float, share: float, rho: float, alpha: float
) -> int | None:
    """Values over both arms (at this split) by which a verdict comes if the true rates are today's estimates."""
    gap = abs(margin - worse)
    if gap < 1e-9 or not 0 < share < 1:
        return None  # an estimate right at the margin: no finite sample settles it
    info = information_for(gap, rho, alpha)
    if math.isinf(info):
        return None
    return math.ceil(info * (var_arm / share + var_control / (1 - share)))


def _difference(arm: ArmCounts, control: ArmCounts) -> float | None:
    arm_mean, control_mean = arm.mean, control.mean
    if arm_mean is None or control_mean is None:  # an arm without values
        return None
    return arm_mean - control_mean


def overall(decisions: list[dict]) -> dict | None:
    """One verdict for an arm: inferior if any metric is, non-inferior if all are, else inconclusive
    (the metric named is the one that decided, or the first still open)."""
    if not decisions:
        return None
    for status in (INFERIOR, INCONCLUSIVE):
        for decision in decisions:
            if decision["status"] == status:
                return decision
    return decisions[0]
