"""Routing telemetry of one gateway: what each answer's `routed_experts` adds, and what can be read back.

Built once from the variants file: for every variant with
`telemetry.routed_experts`, its model's family data (expert count, top-k, MoE
layers, from its config.json) and, for every pruned variant whose `base` it
is, the experts that variant removed (its pruning.json) for the drift window.
Answers of non-streaming requests are counted (vLLM returns the field only
there); the field is removed from what the client gets unless the request
carries `x-moe-routed-experts: keep`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from app.config.variants import GatewayConfig, Variant
from app.telemetry.config import TelemetryOptions
from app.telemetry.counts import RoutingCounts
from app.telemetry.drift import PrunedHitWindow
from app.telemetry.npy import RoutedExpertsError, decode_routed_experts
from moeprune.errors import UserError
from moeprune.formats.families import family_for
from moeprune.formats.jsonfile import read_json
from moeprune.formats.manifest import PruningManifest
from moeprune.formats.statistics import SCHEMA, SCHEMA_VERSION, VECTORS

log = logging.getLogger("moeprune.telemetry")
KEEP_HEADER = "x-moe-routed-experts"


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    num_experts: int
    top_k: int
    moe_layers: list[int]


def model_shape(name: str, variant: Variant, telemetry: TelemetryOptions) -> ModelShape:
    """`telemetry`: the variant's own `telemetry:` section."""
    where = telemetry.config or (Path(variant.model) / "config.json" if variant.model else None)
    if where is None:
        raise UserError(f"variants.{name}.telemetry.config: a url: variant needs the model's config.json")
    config = read_json(
        where, f"variants.{name}.telemetry: {where} does not exist; point telemetry.config at the model's config.json"
    )
    family = family_for(config)
    return ModelShape(
        family.model_type, family.num_experts(config), family.top_k(config), sorted(family.moe_layers(config))
    )


def removed_experts(manifest: PruningManifest) -> dict[int, frozenset[int]]:
    every = set(range(manifest.experts_per_layer_before))
    return {int(layer): frozenset(every - set(kept)) for layer, kept in manifest.kept_experts.items()}


@dataclass
class RoutingTelemetry:
    shapes: dict[str, ModelShape]  # variant with telemetry on -> its model
    labels: dict[str, str]  # variant -> its configured label
    drift: dict[str, tuple[str, PrunedHitWindow]]  # pruned variant -> (its base, window)
    counts: dict[tuple[str, str], RoutingCounts] = field(default_factory=dict)  # (variant, label)
    undecodable: int = 0

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RoutingTelemetry | None:
        watched = {
            name: v.telemetry for name, v in config.variants.items() if v.telemetry and v.telemetry.routed_experts
        }
        if not watched:
            return None
        shapes = {name: model_shape(name, config.variants[name], t) for name, t in watched.items()}
        labels = {name: t.label or name for name, t in watched.items()}
        drift = {}
        for name, variant in config.variants.items():
            manifest_file = variant.telemetry.manifest if variant.telemetry and variant.telemetry.manifest else None
            where = manifest_file.parent if manifest_file is not None else variant.model
            if variant.base in watched and where:
                manifest = PruningManifest.load(where)
                if manifest is not None:
                    window = PrunedHitWindow(removed_experts(manifest), watched[variant.base].window_s)
                    drift[name] = (variant.base, window)
        return cls(shapes, labels, drift)

    def take(self, variant: str, experiment: str, choices: list, keep: bool) -> None:
        """Count the choices' routed_experts under the request's label; remove them unless `keep`."""
        shape = self.shapes.get(variant)
        for choice in choices:
            payload = choice.get("routed_experts") if isinstance(choice, dict) else None
            if payload is None:
                continue
            if not keep:
                del choice["routed_experts"]
            if shape is None:
                continue
            try:
                routed = decode_routed_experts(payload)
            except RoutedExpertsError as exc:
                self.undecodable += 1
                log.warning("routed_experts not counted", extra={"variant": variant, "error": str(exc)[:200]})
                continue
            label = experiment or self.labels[variant]
            counts = self.counts.setdefault((variant, label), RoutingCounts(shape.moe_layers))
            mine = counts.add(routed)
            for base, window in self.drift.values():
                if base == variant:
                    window.add(mine)

    def hit_ratios(self) -> dict[str, float]:
        return {name: window.ratio() for name, (_, window) in self.drift.items()}

    def export(self, variant: str, label: str | None = None) -> dict:
        """The counts as a `moeprune prune --scores-in` statistics file (counts only; no other vector)."""
        shape = self.shapes.get(variant)
        if shape is None:
            raise UserError(f"variant {variant!r} has no routing telemetry; known: {', '.join(sorted(self.shapes))}")
        chosen = [c for (v, lab), c in self.counts.items() if v == variant and (label is None or lab == label)]
        layers = {}
        for layer in shape.moe_layers:
            tokens = sum(c.layers[layer].tokens for c in chosen if layer in c.layers)
            per_expert = [
                float(sum(c.layers[layer].experts.get(e, 0) for c in chosen if layer in c.layers))
                for e in range(shape.num_experts)
            ]
            zeros = [0.0] * shape.num_experts
            layers[str(layer)] = {
                "tokens": tokens,
                "ean_tokens": 0,
                **{name: (per_expert if name == "counts" else zeros) for name in VECTORS},
            }
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "model_type": shape.model_type,
            "num_experts": shape.num_experts,
            "top_k": shape.top_k,
            "ean_max_tokens": None,
            "source": {
                "gateway_traffic": {"variant": variant, "label": label, "responses": sum(c.responses for c in chosen)}
            },
            "calibration": None,
            "layers": layers,
        }

    def labels_of(self, variant: str) -> list[str]:
        return sorted(lab for v, lab in self.counts if v == variant)
