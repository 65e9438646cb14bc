"""The drift signal: of the base's routed (token, expert) pairs in a sliding window, the share that
landed on experts a pruned variant removed (`moeprune_pruned_expert_hit_ratio{variant}`)."""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class PrunedHitWindow:
    removed: dict[int, frozenset[int]]  # MoE layer -> the pruned variant's removed experts (source numbering)
    window_s: float
    entries: deque = field(default_factory=deque)  # (monotonic time, hits, pairs)

    def add(self, counts: dict[int, Counter], now: float | None = None) -> None:
        hits = pairs = 0
        for layer, counted in counts.items():
            removed = self.removed.get(layer)
            if removed is None:
                continue
            pairs += sum(counted.values())
            hits += sum(n for expert, n in counted.items() if expert in removed)
        if pairs:
            self.entries.append((time.monotonic() if now is None else now, hits, pairs))

    def ratio(self, now: float | None = None) -> float:
        """NaN when the window holds no traffic (no data, not 'no drift')."""
        now = time.monotonic() if now is None else now
        while self.entries and self.entries[0][0] < now - self.window_s:
            self.entries.popleft()
        pairs = sum(entry[2] for entry in self.entries)
        return sum(entry[1] for entry in self.entries) / pairs if pairs else math.nan
