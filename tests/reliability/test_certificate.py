"""The certificate's promise, checked on synthetic answers whose true error rates are known exactly."""

from __future__ import annotations

import random

import pytest

from moeprune.reliability.binomial import binomial_cdf, fewest_trials, upper_bound
from moeprune.reliability.certificate import certify

ALPHA, DELTA = 0.05, 0.05


def draw(rng: random.Random, n: int) -> tuple[list[float], list[bool]]:
    """Scores uniform on [0, 1]; an answer with score s is wrong with probability s**2.

    So the true error rate among answers with score <= t is exactly t**2 / 3, and
    the largest safe threshold is sqrt(3 * alpha) (~0.387 for alpha = 0.05).
    """
    scores = [rng.random() for _ in range(n)]
    return scores, [rng.random() < s * s for s in scores]


def true_error(threshold: float) -> float:
    return threshold**2 / 3


def test_error_among_unflagged_is_at_most_alpha_in_at_least_1_minus_delta_of_500_repetitions():
    violations, certified, coverages = 0, 0, []
    for seed in range(500):
        rng = random.Random(seed)
        fit_scores, fit_wrong = draw(rng, 1500)
        scores, wrong = draw(rng, 1500)
        result = certify(fit_scores, fit_wrong, scores, wrong, ALPHA, DELTA)
        if result.status == "certified":
            certified += 1
            coverages.append(result.coverage)
            violations += true_error(result.threshold) > ALPHA  # the true error rate among unflagged answers
    assert violations / 500 <= DELTA
    # and it is not vacuous: most repetitions certify a threshold that serves a useful share
    assert certified >= 400
    assert 0.15 < sum(coverages) / len(coverages) < 0.387  # the safe region: s <= 0.387


def test_a_rule_that_ignores_the_bound_would_fail_the_same_check():
    """The check above can fail: picking the largest threshold whose *observed* error is <= alpha
    (no bound) violates the true rate far more often than delta."""
    violations = 0
    for seed in range(200):
        scores, wrong = draw(random.Random(seed), 400)
        ordered = sorted(zip(scores, wrong))
        best, errors = None, 0
        for i, (s, w) in enumerate(ordered, 1):
            errors += w
            if errors / i <= ALPHA:
                best = s
        violations += best is not None and true_error(best) > ALPHA
    assert violations / 200 > DELTA


def test_too_few_answers_are_uncertified_with_the_number_needed():
    result = certify([0.1] * 10, [False] * 10, [0.1] * 10, [False] * 10)
    assert result.status == "uncertified"
    assert str(fewest_trials(ALPHA, DELTA)) in result.reason
    assert fewest_trials(0.05, 0.05) == 59


def test_a_domain_where_every_score_is_useless_stays_uncertified():
    rng = random.Random(1)
    fit = [rng.random() for _ in range(500)]
    scores = [rng.random() for _ in range(500)]
    wrong = [rng.random() < 0.4 for _ in scores]  # 40% wrong whatever the score
    result = certify(fit, [rng.random() < 0.4 for _ in fit], scores, wrong)
    assert result.status == "uncertified" and result.threshold is None


def test_binomial_tail_and_bound_agree():
    assert binomial_cdf(0, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_cdf(10, 10, 0.3) == 1.0
    assert sum(binomial_cdf(k, 20, 0.2) - binomial_cdf(k - 1, 20, 0.2) for k in range(21)) == pytest.approx(1.0)
    bound = upper_bound(3, 100, 0.05)
    assert binomial_cdf(3, 100, bound) == pytest.approx(0.05, abs=1e-6)
    assert upper_bound(0, 59, 0.05) < 0.05 < upper_bound(0, 58, 0.05)


def test_bad_alpha_is_refused():
    with pytest.raises(ValueError, match="alpha and delta"):
        certify([0.1], [False], [0.1], [False], alpha=0.0)
