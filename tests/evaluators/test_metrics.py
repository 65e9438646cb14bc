"""Every metric against values computed by hand (worked out in the comments)."""

import math

import pytest

from evaluators.metrics.classification import (
    auroc,
    brier_score,
    expected_calibration_error,
    hallucination_rate,
    medhalt_score,
    softmax,
)
from evaluators.metrics.flags import choose_threshold, flag_quality, split_indices
from evaluators.metrics.text import rouge_l, token_f1
from moeprune.reliability.intervals import bootstrap_interval, wilson_interval


def test_ece_15_bins_by_hand():
    # conf 0.9 (x2, one right) -> bin 13: |0.5-0.9| * 2/4 = 0.2
    # conf 0.6 (right)         -> bin 9:  |1.0-0.6| * 1/4 = 0.1
    # conf 0.3 (wrong)         -> bin 4:  |0.0-0.3| * 1/4 = 0.075
    ece = expected_calibration_error([0.9, 0.9, 0.6, 0.3], [True, False, True, False])
    assert ece == pytest.approx(0.375)


def test_ece_puts_confidence_one_in_the_last_bin_and_is_zero_when_calibrated():
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)
    # 0.5 confidence, half right: perfectly calibrated.
    assert expected_calibration_error([0.5] * 4, [True, False, True, False]) == pytest.approx(0.0)
    assert expected_calibration_error([], []) is None


def test_brier_by_hand():
    # (0.9-1)^2 + (0.9-0)^2 + (0.6-1)^2 + (0.3-0)^2 = 0.01 + 0.81 + 0.16 + 0.09 = 1.07; / 4
    assert brier_score([0.9, 0.9, 0.6, 0.3], [True, False, True, False]) == pytest.approx(0.2675)


def test_auroc_by_hand_with_ties_and_undefined():
    # Pairs (positive, negative): (0.35,0.1) win, (0.35,0.4) loss, (0.8,0.1) win, (0.8,0.4) win -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert auroc([0.9, 0.1], [True, False]) == pytest.approx(1.0)
    assert auroc([0.1, 0.2], [True, True]) is None


def test_wilson_interval_by_hand():
    # 8/10: centre = (0.8 + 1.96^2/20) / (1 + 1.96^2/10) = 0.71674,
    # half = 1.96 * sqrt(0.8*0.2/10 + 1.96^2/400) / 1.38415 = 0.22658
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) is None


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = [0.0, 1.0] * 20
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    first = bootstrap_interval(values, mean, seed=3)
    assert first == bootstrap_interval(values, mean, seed=3)
    assert first[0] < 0.5 < first[1]
    assert bootstrap_interval([2.0] * 5, mean) == (2.0, 2.0)
    assert bootstrap_interval([1.0], mean) is None


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat is on the mat") = the cat on the mat = 5; P = R = 5/6
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    # LCS(a b c d, a c e) = 2; P = 2/4, R = 2/3; F = 2PR/(P+R) = 4/7
    assert rouge_l("a b c d", "a c e") == pytest.approx(4 / 7)
    assert rouge_l("x y", "z") == 0.0


def test_token_f1_by_hand():
    # overlap of {a:2, b:1} and {a:1, b:2, c:1} = a:1 + b:1 = 2; P = 2/3, R = 2/4; F = 4/7
    assert token_f1("a a b", "a b b c") == pytest.approx(4 / 7)
    assert token_f1("Paris", "paris!") == 1.0
    assert token_f1("", "x") == 0.0


def test_medhalt_score_and_hallucination_rate_by_hand():
    # 2 right, 2 wrong: (2*1 - 2*0.25) / 4
    assert medhalt_score([True, True, False, False]) == pytest.approx(0.375)
    # wrong and not abstaining: items 3 and 4 (item 2 is wrong but abstained)
    assert hallucination_rate([True, False, False, False], [False, True, False, False]) == pytest.approx(0.5)


def test_softmax_normalises_option_logprobs():
    probs = softmax([math.log(0.2), math.log(0.6), math.log(0.2)])
    assert probs == pytest.approx([0.2, 0.6, 0.2])


def test_threshold_reaches_target_precision_with_best_recall():
    values = [-3, -2.5, -2, -1, -0.5, -0.2]
    wrong = [True, True, False, True, False, False]
    # below -2.25 flags {-3, -2.5}: precision 1, recall 2/3; below -1.5 adds a right answer: 2/3 precision
    choice = choose_threshold(values, wrong, "below", 0.8)
    assert choice.threshold == pytest.approx(-2.25)
    assert (choice.precision, choice.recall, choice.reached_target) == (1.0, pytest.approx(2 / 3), True)
    # An unreachable target falls back to the most precise threshold and says so.
    hard = choose_threshold([1, 2, 3], [False, True, False], "above", 0.9)
    assert not hard.reached_target


def test_flag_quality_on_separable_data_uses_disjoint_splits():
    calibration, held_out = split_indices(40, seed=1)
    assert not set(calibration) & set(held_out) and len(calibration) + len(held_out) == 40
    values = [-5.0 + 0.01 * i for i in range(20)] + [-0.5 + 0.01 * i for i in range(20)]
    wrong = [True] * 20 + [False] * 20
    quality = flag_quality(values, wrong, "below", 0.8, seed=0)
    assert quality["auroc"] == pytest.approx(1.0)
    assert quality["precision"] == 1.0 and quality["recall"] == 1.0
    assert quality["base_rate"] == pytest.approx(0.5)
    assert quality["n_calibration"] + quality["n_held_out"] == 40
    assert flag_quality([float("nan")], [True], "below", 0.8) is None
