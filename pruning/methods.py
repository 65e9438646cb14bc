"""Expert scoring methods: one registry of small pure functions, statistics -> scores.

Every method maps `ExpertStats` to ``{layer: [score of expert 0, 1, ...]}``;
higher means more important (kept first). g_i is the top-k router weight of
expert i renormalised over the token's top-k; E_i(x) the expert's output.
See docs/pruning-methods.md for the formulas and their sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from moeprune.errors import UserError
from moeprune.formats.statistics import ExpertStats

Scores = dict[int, list[float]]


@dataclass(frozen=True)
class Method:
    name: str
    score: Callable[[ExpertStats, int], Scores]
    formula: str
    needs_calibration: bool = True


def _per_layer(stats: ExpertStats, fn: Callable) -> Scores:
    return {index: [float(v) for v in fn(layer)] for index, layer in sorted(stats.layers.items())}


def random_scores(stats: ExpertStats, seed: int) -> Scores:
    # One generator per layer, seeded by (seed, layer): a layer's scores do not
    # depend on which other layers exist. The ratio is applied by selection,
    # so every ratio is honoured (the study's code always kept 50%).
    return {
        index: np.random.default_rng([seed, index]).random(layer.num_experts).tolist()
        for index, layer in sorted(stats.layers.items())
    }


def frequency_scores(stats: ExpertStats, seed: int) -> Scores:
    return _per_layer(stats, lambda layer: layer.counts)


def gate_scores(stats: ExpertStats, seed: int) -> Scores:
    return _per_layer(stats, lambda layer: layer.gate_sum)


def ean_scores(stats: ExpertStats, seed: int) -> Scores:
    return _per_layer(stats, lambda layer: layer.ean_sum)


def reap_scores(stats: ExpertStats, seed: int) -> Scores:
    def mean_over_routed(layer):
        sums, counts = np.asarray(layer.reap_sum), np.asarray(layer.counts)
        # An expert never routed to scores 0, not NaN.
        return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)

    return _per_layer(stats, mean_over_routed)


def reap_sum_scores(stats: ExpertStats, seed: int) -> Scores:
    return _per_layer(stats, lambda layer: layer.reap_sum)


def easyep_scores(stats: ExpertStats, seed: int) -> Scores:
    return _per_layer(stats, lambda layer: layer.easyep_sum)


METHODS: dict[str, Method] = {
    method.name: method
    for method in [
        Method("random", random_scores, "u_i ~ Uniform(0, 1), seeded per (seed, layer)", needs_calibration=False),
        Method("frequency", frequency_scores, "sum_t [i in topk(t)]"),
        Method("gate", gate_scores, "sum_{t: i in topk(t)} g_i(t)"),
        Method("ean", ean_scores, "sum_{t in first N tokens} ||E_i(x_t)||_2 (every expert on every token)"),
        Method("reap", reap_scores, "mean_{t: i in topk(t)} g_i(t) * ||E_i(x_t)||_2 (0 if never routed)"),
        Method("reap-sum", reap_sum_scores, "sum_{t: i in topk(t)} g_i(t) * ||E_i(x_t)||_2"),
        Method(
            "easyep",
            easyep_scores,
            "sum_{t: i in topk(t)} s_t * g_i(t) * ||E_i(x_t)||_2, s_t = 1 - cos(x_t, x_t + sum_j g_j E_j(x_t))",
        ),
    ]
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown pruning method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def score(stats: ExpertStats, method: str, seed: int = 0) -> Scores:
    return get_method(method).score(stats, seed)
