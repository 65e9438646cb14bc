"""Accuracy-style, Med-HALT and calibration metrics over per-item outcomes."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Med-HALT's pointwise score: reward a correct answer, penalise a wrong one.
MEDHALT_CORRECT = 1.0
MEDHALT_WRONG = -0.25


def mean(values: Sequence[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def medhalt_score(correct: Sequence[bool]) -> float | None:
    """Mean pointwise score: +1 per correct answer, -0.25 per wrong one (range [-0.25, 1])."""
    return mean([MEDHALT_CORRECT if ok else MEDHALT_WRONG for ok in correct])


def hallucination_rate(correct: Sequence[bool], abstained: Sequence[bool]) -> float | None:
    """Share of all answers that are wrong AND did not abstain (confidently wrong)."""
    pairs = list(zip(correct, abstained))
    return mean([float(not ok and not abst) for ok, abst in pairs])


def softmax(logprobs: Sequence[float]) -> list[float]:
    peak = max(logprobs)
    weights = [math.exp(lp - peak) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float | None:
    """ECE with `bins` equal-width confidence bins: sum over bins of |B|/n * |acc(B) - conf(B)|.

    Bin b holds confidences in [b/bins, (b+1)/bins); a confidence of exactly 1 goes in the last bin.
    """
    pairs = list(zip(confidences, correct))
    if not pairs:
        return None
    buckets: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for conf, ok in pairs:
        buckets[min(int(conf * bins), bins - 1)].append((conf, ok))
    total = 0.0
    for bucket in buckets:
        if bucket:
            accuracy = sum(ok for _, ok in bucket) / len(bucket)
            confidence = sum(conf for conf, _ in bucket) / len(bucket)
            total += len(bucket) / len(pairs) * abs(accuracy - confidence)
    return total


def brier_score(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Mean squared error of the chosen option's probability against its correctness (range [0, 1])."""
    return mean([(conf - float(ok)) ** 2 for conf, ok in zip(confidences, correct)])


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties 1/2.

    None when either class is empty (the AUROC is undefined there).
    """
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return None
    # Rank-sum (Mann-Whitney U) with average ranks for ties.
    ordered = sorted((s, p) for s, p in zip(scores, positives))
    ranks = [0.0] * len(ordered)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][0] == ordered[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, (_, p) in zip(ranks, ordered) if p)
    u = rank_sum - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))
