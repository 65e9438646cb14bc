"""The card's figures of how well scores separate wrong from right answers, each with a bootstrap 95% CI.

Per score (every signal, and `p_wrong`): AUROC, AUPRC and AURC on the certifying half; for `p_wrong`
also its calibration (ECE, Brier) and the risk-coverage curve there. Single signals are measured on the
same half as `p_wrong`, so the two are compared on the same answers.
"""

from __future__ import annotations

import math

import numpy as np

from evaluators.metrics.bootstrap import with_interval
from evaluators.metrics.classification import brier_score, expected_calibration_error
from evaluators.metrics.ranking import auprc, aurc, auroc, curve_points
from moeprune.reliability.signals import SIGNAL_DIRECTIONS

RANKING = {"auroc": auroc, "auprc": auprc, "aurc": aurc}


def _ece(scores: np.ndarray, wrong: np.ndarray) -> float | None:
    return expected_calibration_error(scores.tolist(), wrong.tolist())


def _brier(scores: np.ndarray, wrong: np.ndarray) -> float | None:
    return brier_score(scores.tolist(), wrong.tolist())


def oriented(signals: list[dict], wrong: list[bool], name: str) -> tuple[np.ndarray, np.ndarray]:
    """The signal's values turned so that higher means more likely wrong; answers without it left out."""
    sign = -1.0 if SIGNAL_DIRECTIONS[name] == "below" else 1.0
    pairs = [
        (sign * float(s[name]), w)
        for s, w in zip(signals, wrong)
        if s.get(name) is not None and not math.isnan(float(s[name]))
    ]
    return np.array([v for v, _ in pairs], dtype=np.float64), np.array([w for _, w in pairs], dtype=bool)


def ranking_quality(scores: np.ndarray, wrong: np.ndarray, resamples: int, seed: int) -> dict:
    return {
        name: with_interval(statistic, scores, wrong, resamples=resamples, seed=seed)
        for name, statistic in RANKING.items()
    }


def quality_figures(
    signals: list[dict], p_wrong: list[float] | None, wrong: list[bool], features: list[str], resamples: int, seed: int
) -> dict:
    """{"quality": {score: {metric: Interval}}, "ece", "brier", "risk_coverage"} of the certifying half."""
    quality = {}
    for name in features:
        scores, labels = oriented(signals, wrong, name)
        if len(scores):
            quality[name] = ranking_quality(scores, labels, resamples, seed)
    out = {"quality": quality}
    if p_wrong is not None and p_wrong:
        scores, labels = np.array(p_wrong, dtype=np.float64), np.array(wrong, dtype=bool)
        quality["p_wrong"] = ranking_quality(scores, labels, resamples, seed)
        out["ece"] = with_interval(_ece, scores, labels, resamples=resamples, seed=seed)
        out["brier"] = with_interval(_brier, scores, labels, resamples=resamples, seed=seed)
        out["risk_coverage"] = curve_points(scores, labels)
    return out
