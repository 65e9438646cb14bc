"""The streaming writer: what it slices, what it copies byte for byte, and how it fails."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from moeprune.errors import UserError
from moeprune.formats.checkpoint import INDEX_NAME, read_shard
from pruning.staging import remove_stale
from pruning.writer import PAUSE_ENV, write_pruned
from testkit.tiny_models import build_tiny_model

PROVENANCE = {"method": "manual", "ratio": 0.5, "allocation": "uniform", "seed": 0}


def tensors(model_dir: Path) -> dict:
    out = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(path, "pt") as handle:
            out.update({name: handle.get_tensor(name) for name in handle.keys()})
    return out


def raw_bytes(model_dir: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        data = path.read_bytes()
        out.update({t.name: data[t.start : t.end] for t in read_shard(path).tensors})
    return out


@pytest.fixture(scope="module")
def sharded_source(tmp_path_factory):
    return build_tiny_model("qwen3_moe", tmp_path_factory.mktemp("sharded") / "src", max_shard_size="300KB")


def test_sharded_checkpoint_is_sliced_renumbered_and_indexed(sharded_source, tmp_path):
    kept = {0: [1, 2, 6, 7], 1: [0, 3, 4, 5]}
    out = write_pruned(sharded_source, tmp_path / "out", kept, PROVENANCE)
    source, pruned = raw_bytes(sharded_source), raw_bytes(out)
    index = json.loads((out / INDEX_NAME).read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert set(index["weight_map"]) == set(pruned)
    assert index["metadata"]["total_size"] == sum(len(b) for b in pruned.values())
    for layer, experts in kept.items():
        for new, old in enumerate(experts):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                name = f"model.layers.{layer}.mlp.experts.{{}}.{proj}.weight"
                assert pruned[name.format(new)] == source[name.format(old)]
        assert f"model.layers.{layer}.mlp.experts.4.up_proj.weight" not in pruned
    source_t, pruned_t = tensors(sharded_source), tensors(out)
    for layer, experts in kept.items():
        router = f"model.layers.{layer}.mlp.gate.weight"
        assert pruned_t[router].equal(source_t[router][experts])
    untouched = [n for n in source if ".mlp." not in n]
    assert untouched and all(pruned[n] == source[n] for n in untouched)  # byte-identical
    assert json.loads((out / "config.json").read_text())["num_local_experts"] == 4


def test_fused_experts_and_their_biases_are_sliced_on_dim0(pruned_factory):
    source, out, kept = pruned_factory("gpt_oss")
    before, after = tensors(source), tensors(out)
    for layer, experts in kept.items():
        for part in (
            "router.weight",
            "router.bias",
            "experts.gate_up_proj",
            "experts.gate_up_proj_bias",
            "experts.down_proj",
            "experts.down_proj_bias",
        ):
            name = f"model.layers.{layer}.mlp.{part}"
            assert after[name].equal(before[name][experts]), name
        assert after[f"model.layers.{layer}.self_attn.sinks"].equal(before[f"model.layers.{layer}.self_attn.sinks"])


def test_tensors_matched_by_name_not_by_a_dimension_equal_to_the_expert_count(pruned_factory):
    source, out, kept = pruned_factory("nemotron_h")
    before, after = tensors(source), tensors(out)
    for name in ("backbone.layers.0.mixer.A_log", "backbone.layers.0.mixer.D", "backbone.layers.0.mixer.dt_bias"):
        assert before[name].shape == (8,) and after[name].equal(before[name])
    for layer, experts in kept.items():
        bias = f"backbone.layers.{layer}.mixer.gate.e_score_correction_bias"
        assert after[bias].equal(before[bias][experts])
    source, out, _ = pruned_factory("qwen2_moe")
    before, after = tensors(source), tensors(out)
    gate = "model.layers.0.mlp.shared_expert_gate.weight"
    assert before[gate].shape == (1, 128) and after[gate].equal(before[gate])


def test_dense_layers_and_vl_config_are_handled(pruned_factory):
    source, out, kept = pruned_factory("deepseek_v3")
    assert sorted(kept) == [1, 2]
    after = tensors(out)
    assert "model.layers.0.mlp.gate_proj.weight" in after  # dense first layer copied as is
    assert json.loads((out / "config.json").read_text())["n_routed_experts"] == 4
    source, out, _ = pruned_factory("qwen3_5_moe")
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["num_experts"] == 4 and "num_experts" not in config
    assert any(name.startswith("model.visual.") for name in tensors(out))


def test_non_weight_files_are_copied_and_foreign_weights_are_not(tiny_qwen3_moe, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for path in tiny_qwen3_moe.iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    (source / "pytorch_model.bin").write_bytes(b"unpruned pickle weights")
    (source / "README.md").write_text("model card")
    out = write_pruned(source, tmp_path / "out", {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}, PROVENANCE)
    names = {path.name for path in out.iterdir()}
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
        "README.md",
        "pruning.json",
        "expert_mask.json",
    ):
        assert name in names
        if name not in ("pruning.json", "expert_mask.json"):
            assert (out / name).read_bytes() == (source / name).read_bytes()
    assert "pytorch_model.bin" not in names


def test_expert_mask_uses_rank_order_when_given(tiny_qwen3_moe, tmp_path):
    ranked = {0: [7, 0, 3, 1], 1: [2, 6, 4, 5]}
    kept = {layer: sorted(order) for layer, order in ranked.items()}
    out = write_pruned(tiny_qwen3_moe, tmp_path / "out", kept, dict(PROVENANCE, ranked=ranked))
    assert json.loads((out / "expert_mask.json").read_text()) == [[7, 0, 3, 1], [2, 6, 4, 5]]
    out = write_pruned(tiny_qwen3_moe, tmp_path / "plain", kept, PROVENANCE)
    assert json.loads((out / "expert_mask.json").read_text()) == [[0, 1, 3, 7], [2, 4, 5, 6]]


def test_existing_output_is_kept_unless_overwrite(tiny_qwen3_moe, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    kept = {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}
    with pytest.raises(UserError, match="already exists.*overwrite"):
        write_pruned(tiny_qwen3_moe, out, kept, PROVENANCE)
    assert (out / "precious.txt").read_text() == "keep me"
    write_pruned(tiny_qwen3_moe, out, kept, PROVENANCE, overwrite=True)
    assert not (out / "precious.txt").exists() and (out / "pruning.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or old dirs left


def test_pickle_only_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_moe"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(UserError, match="only safetensors.*pytorch_model.bin"):
        write_pruned(tmp_path, tmp_path.parent / "out", {0: [0, 1]}, PROVENANCE)


@pytest.mark.parametrize(
    ("kept", "message"),
    [
        ({0: [0, 1, 2, 9], 1: [0, 1, 2, 3]}, r"layer 0: expert indices \[9\] are out of range 0..7"),
        ({0: [0, 1, 1, 2], 1: [0, 1, 2, 3]}, "layer 0: duplicate expert indices"),
        ({0: [0, 1, 2, 3]}, r"layers \[0\] but the MoE layers .* are \[0, 1\]"),
        ({0: [0], 1: [1]}, "fewer than top-k=2; keep at least 2"),
        # Different counts per layer are written as per_layer_config (tests/pruning/test_uneven.py).
        ({}, "non-empty"),
    ],
)
def test_wrong_kept_indices_are_refused_with_the_numbers(tiny_qwen3_moe, tmp_path, kept, message):
    with pytest.raises(UserError, match=message):
        write_pruned(tiny_qwen3_moe, tmp_path / "out", kept, PROVENANCE)
    assert not (tmp_path / "out").exists()


def test_grouped_routing_needs_the_same_number_kept_per_group(tiny_model_factory, tmp_path):
    source = tiny_model_factory("deepseek_v3")  # 8 experts in 2 groups of 4
    with pytest.raises(UserError, match=r"same number of experts kept in every group, got \[3, 1\]"):
        write_pruned(source, tmp_path / "out", {1: [0, 1, 2, 4], 2: [0, 1, 4, 5]}, PROVENANCE)


KILL_SCRIPT = """
import sys
from pruning.writer import write_pruned
write_pruned(sys.argv[1], sys.argv[2], {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}, {"method": "manual"})
"""


def test_a_run_killed_mid_write_leaves_no_output(sharded_source, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, **{PAUSE_ENV: "60"})
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(sharded_source), str(out)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.moeprune-tmp-*/*.safetensors")):
            assert proc.poll() is None, "the writer exited before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    staging = list(tmp_path.glob(".out.moeprune-tmp-*"))
    assert not out.exists()
    assert len(staging) == 1 and list(staging[0].glob("*.safetensors"))  # killed while writing
    # The next run cleans the dead run's staging directory and completes.
    write_pruned(sharded_source, out, {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}, PROVENANCE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert remove_stale(out) == []
