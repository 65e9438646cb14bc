"""Memory gauges for `url:` variants: declared by their pruning manifest or report card, labelled source="declared"."""

from __future__ import annotations

import json

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.config.settings import Settings
from app.config.variants import load_config
from app.main import create_app
from moeprune.errors import UserError

MANIFEST = {
    "schema_version": 1,
    "tool": {"name": "moeprune", "version": "0"},
    "family": "qwen3_moe",
    "source": {"path": "/models/base", "config_sha256": "0" * 64, "files": {}},
    "experts_per_layer_before": 128,
    "kept_experts": {str(layer): list(range(64)) for layer in range(48)},
    "params": {"before": {"total": 30, "experts": 28}, "after": {"total": 16, "experts": 14}},
    "bytes": {
        "before": {"total": 61_000_000_000, "experts": 57_000_000_000},
        "after": {"total": 32_000_000_000, "experts": 28_000_000_000},
    },
    "files": {},
}
CARD = {
    "schema_version": 1,
    "variant": "carded",
    "model": "carded",
    "tasks": {},
    "pruning": {
        "experts_kept": 96,
        "experts_total": 128,
        "experts_kept_total": 4608,
        "experts_before_total": 6144,
        "bytes_saved": 14_000_000_000,
    },
}


def samples(app) -> dict[tuple, float]:
    text = generate_latest(app.state.gateway.metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("moeprune_variant_")
    }


def test_url_variants_get_declared_memory_gauges(tmp_path):
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "pruning.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "card.json").write_text(json.dumps(CARD))
    config = tmp_path / "variants.yaml"
    config.write_text(
        "variants:\n"
        "  manifested: {url: 'http://engine-a:8000', manifest: remote/pruning.json}\n"
        "  carded: {url: 'http://engine-b:8000', report_card: card.json}\n"
        "  bare: {url: 'http://engine-c:8000'}\n"
    )
    app = create_app(Settings(), load_config(config))
    got = samples(app)

    def value(name, **labels):
        return got.get((name, tuple(sorted({**labels, "source": "declared"}.items()))))

    assert value("moeprune_variant_weight_bytes", variant="manifested") == 32_000_000_000
    assert value("moeprune_variant_experts", variant="manifested", kind="kept") == 48 * 64
    assert value("moeprune_variant_experts", variant="manifested", kind="total") == 48 * 128
    assert value("moeprune_variant_bytes_saved", variant="manifested") == 29_000_000_000
    assert value("moeprune_variant_bytes_saved_ratio", variant="manifested") == pytest.approx(29 / 61)
    # a report card declares experts and bytes saved, not the weight bytes
    assert value("moeprune_variant_experts", variant="carded", kind="kept") == 4608
    assert value("moeprune_variant_experts", variant="carded", kind="total") == 6144
    assert value("moeprune_variant_bytes_saved", variant="carded") == 14_000_000_000
    assert value("moeprune_variant_weight_bytes", variant="carded") is None
    assert not any(dict(labels).get("variant") == "bare" for _, labels in got)  # nothing declared: no series
    assert app.state.gateway.footprints["manifested"].describe()["source"] == "declared"


def test_a_missing_manifest_is_a_config_error_naming_the_field(tmp_path):
    config = tmp_path / "variants.yaml"
    config.write_text("variants:\n  remote: {url: 'http://engine:8000', manifest: nowhere/pruning.json}\n")
    with pytest.raises(UserError, match=r"variants\.remote\.manifest: .*nowhere/pruning\.json does not exist"):
        create_app(Settings(), load_config(config))
