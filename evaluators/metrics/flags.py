"""Flag quality: how well a per-response signal separates wrong from right answers.

For each signal (moeprune/reliability/signals.py), the AUROC of "wrong" vs "right", and a
threshold chosen on a calibration split to reach a target precision (share of
flagged answers that are wrong), with precision and recall measured on a
held-out split, so the reported numbers are not tuned on the data they report.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from evaluators.metrics.classification import auroc
from moeprune.reliability.signals import past_threshold


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float | None
    recall: float | None
    reached_target: bool


def precision_recall(values, wrong, threshold: float, direction: str) -> tuple[float | None, float | None]:
    flagged = [past_threshold(v, threshold, direction) for v in values]
    true_pos = sum(f and w for f, w in zip(flagged, wrong))
    n_flagged, n_wrong = sum(flagged), sum(wrong)
    precision = true_pos / n_flagged if n_flagged else None
    recall = true_pos / n_wrong if n_wrong else None
    return precision, recall


def candidate_thresholds(values: Sequence[float], direction: str) -> list[float]:
    """Midpoints between distinct values, plus one beyond each end (flag all / flag none)."""
    distinct = sorted(set(values))
    mids = [(a + b) / 2 for a, b in zip(distinct, distinct[1:])]
    return [distinct[0] - 1.0, *mids, distinct[-1] + 1.0]


def choose_threshold(values, wrong, direction: str, target_precision: float) -> ThresholdChoice | None:
    """The threshold with the highest recall among those reaching target precision.

    If none reaches it, the one with the highest precision (then recall), marked
    `reached_target=False`, so a caller can see the target was out of reach.
    """
    if not values:
        return None
    best, best_key = None, None
    fallback, fallback_key = None, None
    for threshold in candidate_thresholds(values, direction):
        precision, recall = precision_recall(values, wrong, threshold, direction)
        if precision is None:
            continue
        choice = (threshold, precision, recall or 0.0)
        if precision >= target_precision and (best_key is None or (recall or 0.0) > best_key):
            best, best_key = choice, recall or 0.0
        key = (precision, recall or 0.0)
        if fallback_key is None or key > fallback_key:
            fallback, fallback_key = choice, key
    if best is not None:
        return ThresholdChoice(best[0], best[1], best[2], True)
    if fallback is not None:
        return ThresholdChoice(fallback[0], fallback[1], fallback[2], False)
    return None


def split_indices(n: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded half/half split into calibration and held-out indices."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    half = n // 2
    return sorted(order[:half]), sorted(order[half:])


def flag_quality(values, wrong, direction: str, target_precision: float, seed: int = 0) -> dict | None:
    """AUROC (all data), threshold (calibration split), precision/recall (held-out), base rate (all).

    `values` may contain None/NaN (signal unavailable for that response); those
    responses are left out. None when no response has the signal.
    """
    pairs = [(v, w) for v, w in zip(values, wrong) if v is not None and not math.isnan(v)]
    if not pairs:
        return None
    vals = [v for v, _ in pairs]
    wrongs = [bool(w) for _, w in pairs]
    # AUROC with the score oriented so that higher means "more likely wrong".
    oriented = [-v if direction == "below" else v for v in vals]
    calibration, held_out = split_indices(len(vals), seed)
    choice = choose_threshold(
        [vals[i] for i in calibration], [wrongs[i] for i in calibration], direction, target_precision
    )
    if choice is None:
        return {
            "auroc": auroc(oriented, wrongs),
            "threshold": None,
            "precision": None,
            "recall": None,
            "base_rate": None,
            "n": len(vals),
            "n_calibration": len(calibration),
            "n_held_out": len(held_out),
            "reached_target": False,
        }
    precision, recall = precision_recall(
        [vals[i] for i in held_out], [wrongs[i] for i in held_out], choice.threshold, direction
    )
    base_rate = sum(past_threshold(v, choice.threshold, direction) for v in vals) / len(vals)
    return {
        "auroc": auroc(oriented, wrongs),
        "threshold": choice.threshold,
        "precision": precision,
        "recall": recall,
        "base_rate": base_rate,
        "n": len(vals),
        "n_calibration": len(calibration),
        "n_held_out": len(held_out),
        "calibration_precision": choice.precision,
        "reached_target": choice.reached_target,
    }
