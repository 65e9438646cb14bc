"""AUROC, AUPRC, AURC, the risk-coverage curve and the bootstrap interval, checked by hand."""

import random

import numpy as np
import pytest

from evaluators.metrics.bootstrap import with_interval
from evaluators.metrics.classification import auroc as rank_sum_auroc
from evaluators.metrics.ranking import auprc, aurc, auroc, curve_points, risk_coverage

SCORES = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
WRONG = np.array([True, False, True, False, False])


def test_auroc_agrees_with_the_rank_sum_definition_ties_included():
    rng = random.Random(0)
    scores = [rng.choice([0.1, 0.2, 0.3, 0.5]) for _ in range(60)]
    wrong = [rng.random() < 0.3 for _ in range(60)]
    assert auroc(np.array(scores), np.array(wrong)) == pytest.approx(rank_sum_auroc(scores, wrong))
    assert auroc(SCORES, np.zeros(5, dtype=bool)) is None


def test_auprc_by_hand():
    # flagged highest first: wrong (P=1, R=1/2), right, wrong (P=2/3, R=1) -> AP = 1/2 + 1/3
    assert auprc(SCORES, WRONG) == pytest.approx(0.5 + 1 / 3)
    # a tie of one wrong and one right answer is flagged together: precision 1/2 for the whole recall
    assert auprc(np.array([1.0, 1.0]), np.array([True, False])) == pytest.approx(0.5)
    assert auprc(SCORES, np.ones(5, dtype=bool)) is None


def test_risk_coverage_and_aurc_by_hand():
    coverage, risk = risk_coverage(SCORES, WRONG)  # served lowest first: right, right, wrong, right, wrong
    assert coverage.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert risk.tolist() == pytest.approx([0, 0, 1 / 3, 1 / 4, 2 / 5])
    assert aurc(SCORES, WRONG) == pytest.approx((1 / 3 + 1 / 4 + 2 / 5) / 5)
    assert curve_points(SCORES, WRONG, points=3) == [[0.2, 0.0], [0.6, 0.333333], [1.0, 0.4]]


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    wrong = rng.random(300) < 0.2
    scores = wrong * 1.0 + rng.normal(0, 0.8, 300)
    first = with_interval(auroc, scores, wrong, resamples=300, seed=7)
    assert first == with_interval(auroc, scores, wrong, resamples=300, seed=7)
    low, high = first["ci95"]
    assert low < first["value"] < high and high - low < 0.2
    assert with_interval(auroc, scores[:1], wrong[:1]) == {"value": None, "ci95": None}
