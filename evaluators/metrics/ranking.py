"""How well a score ranks wrong answers above right ones: AUROC, AUPRC, AURC and the risk-coverage curve.

Scores are oriented so that higher means "more likely wrong" (a signal whose wrong direction is `below`
is negated first). Ties are handled as groups everywhere: answers with the same score are served or
flagged together, as a threshold on that score would do. Inputs are numpy arrays, so a bootstrap can
call these a thousand times per statistic cheaply.
"""

from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, wrong: np.ndarray) -> float | None:
    """P(score of a random wrong answer > score of a random right one), ties counted 1/2; None with one class."""
    positives, negatives = scores[wrong], np.sort(scores[~wrong])
    if not len(positives) or not len(negatives):
        return None
    below = np.searchsorted(negatives, positives, side="left")
    not_above = np.searchsorted(negatives, positives, side="right")
    return float((below + not_above).sum() / (2.0 * len(positives) * len(negatives)))


def _groups(scores: np.ndarray, wrong: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct score, in serving order: (answers, wrong answers) with that score."""
    keys = -scores if descending else scores
    _, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse)
    errors = np.bincount(inverse, weights=wrong.astype(np.float64))
    return counts, errors


def auprc(scores: np.ndarray, wrong: np.ndarray) -> float | None:
    """Average precision of flagging wrong answers, highest score first (chance level: the error rate)."""
    total_wrong = int(wrong.sum())
    if total_wrong == 0 or total_wrong == len(wrong):
        return None
    counts, errors = _groups(scores, wrong, descending=True)
    flagged, caught = np.cumsum(counts), np.cumsum(errors)
    return float(((errors / total_wrong) * (caught / flagged)).sum())


def risk_coverage(scores: np.ndarray, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, error among served) when answers are served lowest score first, one point per distinct score."""
    if not len(scores):
        return np.zeros(0), np.zeros(0)
    counts, errors = _groups(scores, wrong, descending=False)
    served, errors_served = np.cumsum(counts), np.cumsum(errors)
    return served / len(scores), errors_served / served


def aurc(scores: np.ndarray, wrong: np.ndarray) -> float | None:
    """Area under the risk-coverage curve (mean error among served over every coverage); lower is better."""
    if not len(scores):
        return None
    counts, _ = _groups(scores, wrong, descending=False)
    _, risk = risk_coverage(scores, wrong)
    return float((counts * risk).sum() / len(scores))


def curve_points(scores: np.ndarray, wrong: np.ndarray, points: int = 50) -> list[list[float]]:
    """The risk-coverage curve thinned to at most `points` [coverage, error] pairs (the card's copy)."""
    coverage, risk = risk_coverage(scores, wrong)
    if len(coverage) > points:
        keep = np.unique(np.linspace(0, len(coverage) - 1, points).round().astype(int))
        coverage, risk = coverage[keep], risk[keep]
    return [[round(float(c), 6), round(float(r), 6)] for c, r in zip(coverage, risk)]
