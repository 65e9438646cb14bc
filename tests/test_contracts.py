"""The file contracts have one reader each: a malformed file fails the same way in every command,
and the gateway's memory gauges count experts exactly as `moeprune inspect` does."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from app.engines.footprint import measure
from app.metrics import GatewayMetrics
from moeprune.cli import main
from pruning.commands.inspect import describe
from pruning.writer import write_pruned


def error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err.strip().split(": error: ", 1)[1]


@pytest.fixture
def broken_manifest_dir(tiny_qwen3_moe, tmp_path):
    model = tmp_path / "pruned"
    shutil.copytree(tiny_qwen3_moe, model)
    # Valid JSON, wrong contract: experts_per_layer_before missing, kept_experts not a mapping.
    (model / "pruning.json").write_text(json.dumps({"schema_version": 1, "kept_experts": [[0, 1]], "files": {}}))
    return model


def test_a_malformed_pruning_json_fails_alike_in_inspect_eval_and_serve(broken_manifest_dir, tmp_path, capsys):
    config = tmp_path / "variants.yaml"
    config.write_text(yaml.safe_dump({"variants": {"pruned": {"model": str(broken_manifest_dir)}}}))
    messages = {
        "inspect": error_line(capsys, ["inspect", str(broken_manifest_dir)]),
        "eval": error_line(
            capsys,
            [
                "eval",
                "--endpoint",
                "http://127.0.0.1:9",
                "--model",
                "m",
                "--tasks",
                "bio_qa",
                "--model-dir",
                str(broken_manifest_dir),
                "--out",
                str(tmp_path / "eval"),
            ],
        ),
        "serve": error_line(capsys, ["serve", "--config", str(config)]),
    }
    assert len(set(messages.values())) == 1, messages
    assert "not a valid pruning manifest" in messages["inspect"] and "tool: Field required" in messages["inspect"]


def test_a_malformed_report_card_fails_alike_in_serve_and_report(tiny_qwen3_moe, tmp_path, capsys):
    card = tmp_path / "report_card.json"
    card.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "variant": "v",
                "model": "v",
                "tasks": {},
                "flags": {"low_confidence": {"signal": "mean_logprob", "direction": "sideways", "threshold": -1.0}},
            }
        )
    )
    config = tmp_path / "variants.yaml"
    config.write_text(yaml.safe_dump({"variants": {"v": {"url": "http://127.0.0.1:9", "report_card": str(card)}}}))
    serve = error_line(capsys, ["serve", "--config", str(config)])
    report = error_line(capsys, ["report", str(card), "--out", str(tmp_path / "report")])
    assert serve == report and "flags.low_confidence.direction" in serve


def test_memory_gauges_count_experts_as_inspect_does_with_a_dense_first_layer(tiny_model_factory, tmp_path):
    base = tiny_model_factory("deepseek_v3")  # 3 decoder layers, the first dense: 2 MoE layers of 8 experts
    kept = {1: [0, 1, 4, 5], 2: [2, 3, 6, 7]}  # the same number per routing group
    pruned = write_pruned(
        base,
        tmp_path / "pruned",
        kept,
        {"method": "manual", "ratio": 0.5, "allocation": "uniform", "seed": 0, "mask_file": None, "calibration": None},
    )
    metrics = GatewayMetrics()
    for name, model_dir in (("base", base), ("pruned", pruned)):
        info = describe(model_dir)
        footprint = measure(model_dir, base if name == "pruned" else None)
        metrics.register_variant(name, footprint, {}, managed=True)
        assert footprint.moe_layers == len(info["moe_layers"]) == 2
        assert footprint.experts_kept == info["experts_per_layer"]
        assert footprint.weight_bytes == info["bytes"]["total"]
    assert measure(base).experts_kept_total == measure(base).experts_before_total == 16  # not 8 x 3 layers
    gauges = {
        (s.labels["variant"], s.labels["kind"]): s.value
        for family in metrics.registry.collect()
        if family.name == "moeprune_variant_experts"
        for s in family.samples
    }
    assert gauges == {("base", "kept"): 16, ("base", "total"): 16, ("pruned", "kept"): 8, ("pruned", "total"): 16}
    assert describe(pruned)["pruning"]["experts_kept_total"] == 8
    assert describe(pruned)["pruning"]["experts_before_total"] == 16
