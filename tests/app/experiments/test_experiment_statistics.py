"""The verdict's statistics: hand-checked values, the false-verdict rate under the null while peeking after
every observation, and the sample size by which a real difference is found.

The simulations run the app's own functions (app/experiments/sequential.py),
vectorised with numpy: the same arithmetic, given numpy's log and sqrt.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.experiments.sequential import (
    INCONCLUSIVE,
    INFERIOR,
    MIN_PER_ARM,
    NON_INFERIOR,
    ArmCounts,
    bounded_variance,
    decide,
    information_for,
    needed_total,
    overall,
    radius,
    tuned_rho,
    verdict_code,
)
from app.experiments.stats import arm_summary, histogram_quantile, latency_counter

ALPHA = 0.05
RUNS = 1000


def simulate(p_arm: float, p_control: float, margin: float, steps: int, seed: int, naive_z: float | None = None):
    """RUNS experiments of `steps` observations (each to either arm with probability 1/2, a flag raised with
    the arm's probability); the verdict is read after every observation. Returns (first verdict's step or -1,
    that verdict's code: +1 non-inferior, -1 inferior, 0 none). `naive_z`: a fixed-sample z interval instead."""
    rng = np.random.default_rng(seed)
    rho = tuned_rho(margin, ALPHA)
    first, codes = np.full(RUNS, -1), np.zeros(RUNS, int)
    for start in range(0, RUNS, 250):  # blocks of 250 runs bound the memory (~50 MB)
        rows = min(250, RUNS - start)
        to_arm = rng.random((rows, steps)) < 0.5
        raised = rng.random((rows, steps)) < np.where(to_arm, p_arm, p_control)
        n_arm = np.cumsum(to_arm, axis=1)
        n_control = np.arange(1, steps + 1) - n_arm
        s_arm, s_control = np.cumsum(raised & to_arm, axis=1), np.cumsum(raised & ~to_arm, axis=1)
        enough = (n_arm >= MIN_PER_ARM) & (n_control >= MIN_PER_ARM)
        n_arm, n_control = np.maximum(n_arm, 1), np.maximum(n_control, 1)
        worse = s_arm / n_arm - s_control / n_control  # a flag: a higher rate is worse
        info = 1 / (bounded_variance(s_arm, n_arm) / n_arm + bounded_variance(s_control, n_control) / n_control)
        half = radius(info, rho, ALPHA, log=np.log, sqrt=np.sqrt) if naive_z is None else naive_z / np.sqrt(info)
        code = np.where(enough, verdict_code(worse, half, margin), 0)
        hit = code != 0
        step = hit.argmax(axis=1)
        first[start : start + rows] = np.where(hit.any(axis=1), step + 1, -1)
        codes[start : start + rows] = np.where(hit.any(axis=1), code[np.arange(rows), step], 0)
    return first, codes


def test_radius_matches_a_hand_computed_value():
    # sqrt((100 + 10) * ln(110 / (10 * 0.05^2))) / 100 = sqrt(110 * ln 4400) / 100 = sqrt(922.83) / 100
    assert radius(100, 10, 0.05) == pytest.approx(0.30378, abs=1e-5)
    # More information, a narrower interval; a smaller alpha, a wider one.
    assert radius(400, 10, 0.05) < radius(100, 10, 0.05) < radius(100, 10, 0.01)


def test_decide_on_a_small_hand_checked_case():
    # Flag raised on 30 of 100 answers of the arm, 20 of 100 of control; margin 5 points.
    # Smoothed means 31/102 and 21/102: variances 0.211553 and 0.163495, information 1/0.00375048 = 266.63.
    arm, control = ArmCounts(100, 30), ArmCounts(100, 20)
    decision = decide("low_confidence", arm, control, 0.05, ALPHA, higher_is_better=False)
    assert bounded_variance(30, 100) == pytest.approx(0.211553, abs=1e-6)
    info = 1 / (0.211553 / 100 + 0.163495 / 100)
    assert info == pytest.approx(266.63, abs=0.01)
    half = radius(info, tuned_rho(0.05, ALPHA), ALPHA)
    assert decision["estimate"] == pytest.approx(0.10)
    assert decision["interval"] == pytest.approx([0.10 - half, 0.10 + half], abs=1e-4)
    assert decision["status"] == INCONCLUSIVE and decision["n"] == {"arm": 100, "control": 100}
    assert decision["needed_n_estimate"] > 200
    # Thirty times the data at the same rates: conclusively worse than the margin.
    more = decide("low_confidence", ArmCounts(3000, 900), ArmCounts(3000, 600), 0.05, ALPHA, higher_is_better=False)
    assert more["status"] == INFERIOR
    # An outcome (higher is better) equal in both arms with a 10-point margin: non-inferior.
    same = decide("outcome", ArmCounts(2000, 1400), ArmCounts(2000, 1400), 0.10, ALPHA, higher_is_better=True)
    assert same["status"] == NON_INFERIOR and same["needed_n_estimate"] == 4000


def test_no_verdict_before_the_minimum_per_arm():
    decision = decide("outcome", ArmCounts(MIN_PER_ARM - 1, 0), ArmCounts(500, 500), 0.02, ALPHA, True)
    assert decision["status"] == INCONCLUSIVE and decision["interval"] is None


def test_overall_is_inferior_if_any_metric_is_and_non_inferior_only_if_all_are():
    ni, inf, open_ = (
        {"status": status, "metric": name}
        for status, name in ((NON_INFERIOR, "a"), (INFERIOR, "b"), (INCONCLUSIVE, "c"))
    )
    assert overall([ni, inf, open_])["metric"] == "b"
    assert overall([ni, open_])["metric"] == "c"
    assert overall([ni])["status"] == NON_INFERIOR and overall([]) is None


def test_under_the_null_peeking_after_every_observation_keeps_false_verdicts_below_alpha():
    """The arm is worse by exactly the margin, so either verdict would be wrong. With RUNS runs, a true
    rate of alpha would exceed alpha + 2.33 binomial sd in only 1% of test runs: that is the tolerance.
    A fixed-sample 95% interval read the same way is wrong far more often (what the peeking problem is)."""
    tolerance = 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)
    _, codes = simulate(p_arm=0.25, p_control=0.20, margin=0.05, steps=3000, seed=1)
    assert (codes != 0).mean() <= ALPHA + tolerance
    _, naive = simulate(p_arm=0.25, p_control=0.20, margin=0.05, steps=3000, seed=1, naive_z=1.96)
    assert (naive != 0).mean() > 4 * ALPHA
    # Equal rates and a zero margin: any verdict is wrong.
    _, codes = simulate(p_arm=0.3, p_control=0.3, margin=0.0, steps=2000, seed=2)
    assert (codes != 0).mean() <= ALPHA + tolerance


def test_under_an_alternative_the_verdict_arrives_within_the_computed_sample_size():
    """Arm flags 35% vs control 20% with a 5-point margin: inferior. needed_total (at the true rates) is the
    total at which the interval's radius equals the 10-point gap; the verdict comes by it in about half the
    runs (the estimate is as likely above as below the truth there), and by twice it in nearly all."""
    needed = needed_total(0.15, 0.05, 0.35 * 0.65, 0.20 * 0.80, 0.5, tuned_rho(0.05, ALPHA), ALPHA)
    assert 600 < needed < 1000
    first, codes = simulate(p_arm=0.35, p_control=0.20, margin=0.05, steps=2 * needed, seed=3)
    assert (codes == NON_INFERIOR_CODE).sum() == 0
    assert (codes == INFERIOR_CODE).mean() >= 0.9
    assert np.median(first[codes == INFERIOR_CODE]) <= needed
    # And a better arm (15% vs 20%) is found non-inferior the same way.
    needed = needed_total(-0.05, 0.05, 0.15 * 0.85, 0.20 * 0.80, 0.5, tuned_rho(0.05, ALPHA), ALPHA)
    first, codes = simulate(p_arm=0.15, p_control=0.20, margin=0.05, steps=2 * needed, seed=4)
    assert (codes == INFERIOR_CODE).sum() == 0 and (codes == NON_INFERIOR_CODE).mean() >= 0.9


INFERIOR_CODE, NON_INFERIOR_CODE = -1, 1


def test_information_for_inverts_the_radius():
    rho = tuned_rho(0.02, ALPHA)
    info = information_for(0.02, rho, ALPHA)
    assert radius(info, rho, ALPHA) == pytest.approx(0.02, rel=1e-6)
    assert radius(info * 0.99, rho, ALPHA) > 0.02


def test_histogram_quantiles_and_the_arm_summary():
    counters = {
        "requests": 12,
        "errors": 2,
        "answered": 10,
        "flag:low_confidence": 3,
        "latency_sum": 1.0,
        latency_counter(0.04): 5,
        latency_counter(0.2): 5,
        "feedback": 4,
        "feedback_sum": 3,
        "feedback_good": 3,
        "feedback_bad": 1,
    }
    summary = arm_summary(counters)
    assert summary["requests"] == 12 and summary["error_rate"] == pytest.approx(2 / 12)
    assert summary["flags"]["low_confidence"]["rate"] == 0.3 and summary["flags"]["refusal"]["count"] == 0
    assert summary["latency_ms"]["mean"] == pytest.approx(100.0)
    assert summary["latency_ms"]["p50"] == pytest.approx(50.0)  # the 5th of 10 values: the top of (25, 50] ms
    assert summary["outcome"] == {
        "n": 4,
        "mean": 0.75,
        "ci95": pytest.approx([0.3006, 0.9544], abs=1e-3),
        "good": 3,
        "bad": 1,
        "scores": 0,
    }
    assert histogram_quantile([(1.0, 0), (2.0, 4), (math.inf, 0)], 2) == pytest.approx(1.5)
    assert histogram_quantile([(1.0, 0)], 0) is None
