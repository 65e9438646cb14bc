"""Routing counts per (variant, app label): how often each expert of each MoE layer was chosen.

Only integers are kept: no prompt, no answer, no user, no request id. A label
is the experiment's name or the variant's `telemetry.label`, so counts are
per app, never per user.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from app.telemetry.npy import RoutedExperts


@dataclass
class LayerCounts:
    tokens: int = 0
    experts: Counter = field(default_factory=Counter)


@dataclass
class RoutingCounts:
    moe_layers: list[int]
    layers: dict[int, LayerCounts] = field(default_factory=dict)
    responses: int = 0

    def add(self, routed: RoutedExperts) -> dict[int, Counter]:
        """Count one answer's routing; returns its own per-layer counts (for the drift window)."""
        mine = {}
        for layer in self.moe_layers:
            if layer >= routed.layers:
                continue
            counted: Counter[int] = Counter()
            for k in range(routed.top_k):
                counted.update(routed.layer_column(layer, k))
            entry = self.layers.setdefault(layer, LayerCounts())
            entry.tokens += routed.tokens
            entry.experts.update(counted)
            mine[layer] = counted
        self.responses += 1
        return mine
