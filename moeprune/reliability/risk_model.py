"""`p_wrong`: one calibrated probability that a response is wrong, from its signals.

A logistic regression over standardised signals, then an isotonic map of its output
fitted on the same data (pool-adjacent-violators), read with linear interpolation
between the blocks' centres so that thresholds stay fine-grained. Fitting needs numpy
(the evaluators have it); `predict` is pure Python float arithmetic in a fixed order,
so the evaluators and the gateway compute the same bits for the same signals.

Ties the isotonic map would leave are broken by the logistic score (a 1e-6 share), so p_wrong ranks
answers as the logistic model does and stays calibrated to within 1e-6.

A missing signal (None or NaN: no logprobs, no base reachable) is imputed with the
fitting data's mean, which is 0 after standardisation: the response is judged on
the signals it has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Ridge strength on standardised features (keeps the fit finite when classes separate)
# and Newton steps; both fixed, so the same labelled data gives the same model bytes.
L2 = 1e-2
NEWTON_STEPS = 50
# The share of p_wrong that orders answers the isotonic map leaves tied (RiskModel.p_wrong).
TIE_BREAK = 1e-6
# A signal missing in more than this share of the fitting data is left out of the model.
MAX_MISSING_SHARE = 0.5


def _value(signals: Mapping[str, float | None], name: str) -> float | None:
    value = signals.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if name == "answer_tokens":  # lengths span orders of magnitude; the log is what separates
        return math.log1p(value)
    return float(value)


@dataclass(frozen=True)
class RiskModel:
    features: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    iso_x: tuple[float, ...]  # logistic outputs at the isotonic blocks' centres (increasing)
    iso_y: tuple[float, ...]  # the blocks' error rates (non-decreasing)

    def logit(self, signals: Mapping[str, float | None]) -> float:
        total = self.intercept
        for name, mean, scale, weight in zip(self.features, self.means, self.scales, self.coef):
            value = _value(signals, name)
            if value is not None:
                total += weight * ((value - mean) / scale)
        return total

    def p_wrong(self, signals: Mapping[str, float | None]) -> float:
        z = self.logit(signals)
        raw = 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0
        calibrated = _interpolate(raw, self.iso_x, self.iso_y)
        if not self.iso_x:
            return calibrated
        # The isotonic map is flat below its first block's centre and above its last (and where a block's
        # rate repeats): many answers would share one p_wrong there, and the ranking, the AUROC and the
        # certificate's thresholds would lose the logistic model's order (on the demo's cards a third of the
        # answers tied, AUROC up to 0.014 lower). A TIE_BREAK share of a squashed logit keeps that order
        # (strictly increasing in z, resolvable in a double) and moves p_wrong by at most TIE_BREAK.
        return (1.0 - TIE_BREAK) * calibrated + TIE_BREAK * (0.5 + 0.5 * z / (1.0 + abs(z)))

    def as_dict(self) -> dict:
        return {
            "features": list(self.features),
            "means": list(self.means),
            "scales": list(self.scales),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "iso_x": list(self.iso_x),
            "iso_y": list(self.iso_y),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> RiskModel:
        return cls(
            tuple(data["features"]),
            tuple(data["means"]),
            tuple(data["scales"]),
            tuple(data["coef"]),
            float(data["intercept"]),
            tuple(data["iso_x"]),
            tuple(data["iso_y"]),
        )


def _interpolate(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    if not xs:
        return x
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    low, high = 0, len(xs) - 1
    while high - low > 1:
        mid = (low + high) // 2
        if xs[mid] <= x:
            low = mid
        else:
            high = mid
    span = xs[high] - xs[low]
    share = (x - xs[low]) / span if span > 0 else 0.0
    return ys[low] + share * (ys[high] - ys[low])


def isotonic_blocks(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators on (x, y) sorted by x: each block's mean x and mean y (non-decreasing y)."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], ys[i]))
    blocks: list[list[float]] = []  # [sum_x, sum_y, count]
    for i in order:
        blocks.append([xs[i], float(ys[i]), 1.0])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            sx, sy, c = blocks.pop()
            blocks[-1][0] += sx
            blocks[-1][1] += sy
            blocks[-1][2] += c
    return [b[0] / b[2] for b in blocks], [b[1] / b[2] for b in blocks]


def fit_risk_model(
    records: Sequence[Mapping[str, float | None]], wrong: Sequence[bool], features: Sequence[str]
) -> RiskModel:
    """Fit `p_wrong` on signal dicts and their labels (True = wrong). Needs both classes present."""
    import numpy as np

    if len(records) != len(wrong):
        raise ValueError(f"{len(records)} signal records but {len(wrong)} labels")
    if not any(wrong) or all(wrong):
        raise ValueError("fitting p_wrong needs both wrong and right answers")
    kept, columns = [], []
    for name in features:
        values = [_value(r, name) for r in records]
        present = [v for v in values if v is not None]
        if len(present) >= (1 - MAX_MISSING_SHARE) * len(records) and len(set(present)) > 1:
            kept.append(name)
            columns.append(values)
    means, scales = [], []
    matrix = np.zeros((len(records), len(kept)))
    for j, values in enumerate(columns):
        observed = np.array([v for v in values if v is not None], dtype=np.float64)
        mean, scale = float(observed.mean()), float(observed.std()) or 1.0
        means.append(mean)
        scales.append(scale)
        matrix[:, j] = [0.0 if v is None else (v - mean) / scale for v in values]
    y = np.array(wrong, dtype=np.float64)
    design = np.hstack([np.ones((len(records), 1)), matrix])
    weights = np.zeros(design.shape[1])
    penalty = np.diag([0.0] + [L2 * len(records)] * len(kept))
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -700, 700)))
        gradient = design.T @ (p - y) + penalty @ weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(design.shape[1])
        weights = weights - np.linalg.solve(hessian, gradient)
    model = RiskModel(
        tuple(kept), tuple(means), tuple(scales), tuple(float(w) for w in weights[1:]), float(weights[0]), (), ()
    )
    raw = [model.p_wrong(r) for r in records]  # the logistic output: no isotonic map yet
    iso_x, iso_y = isotonic_blocks(raw, [float(w) for w in wrong])
    return RiskModel(model.features, model.means, model.scales, model.coef, model.intercept, tuple(iso_x), tuple(iso_y))
