"""pruning.json as docs/contracts.md fixes it, and `moeprune inspect` / `moeprune verify` on it."""

import json
import shutil

import pytest

from moeprune import cli
from moeprune.formats.hashing import sha256_file
from moeprune.formats.manifest import verify

CONTRACT_KEYS = {
    "schema_version",
    "tool",
    "family",
    "source",
    "method",
    "ratio",
    "allocation",
    "seed",
    "mask_file",
    "experts_per_layer_before",
    "kept_experts",
    "calibration",
    "params",
    "bytes",
    "files",
}


@pytest.fixture
def pruned_copy(pruned_factory, tmp_path):
    _, out, _ = pruned_factory("qwen3_moe")
    copy = tmp_path / "pruned"
    shutil.copytree(out, copy)
    return copy


def test_manifest_follows_the_contract(pruned_factory):
    source, out, kept = pruned_factory("qwen3_moe")
    manifest = json.loads((out / "pruning.json").read_text())
    assert set(manifest) == CONTRACT_KEYS
    assert manifest["schema_version"] == 1 and manifest["tool"]["name"] == "moe-prune-serve"
    assert manifest["family"] == "qwen3_moe" and manifest["method"] == "manual" and manifest["ratio"] == 0.5
    assert manifest["kept_experts"] == {str(k): v for k, v in kept.items()}
    assert manifest["experts_per_layer_before"] == 8
    assert manifest["source"]["config_sha256"] == sha256_file(source / "config.json")
    assert manifest["source"]["files"] == {"model.safetensors": sha256_file(source / "model.safetensors")}
    files = {p.name for p in out.iterdir()} - {"pruning.json"}
    assert set(manifest["files"]) == files
    assert all(manifest["files"][name] == sha256_file(out / name) for name in files)
    for kind in ("params", "bytes"):
        before, after = manifest[kind]["before"], manifest[kind]["after"]
        # Half the experts go: the expert share halves, everything else is unchanged (router rows aside).
        assert after["experts"] * 2 == before["experts"]
        assert before["total"] - after["total"] > before["experts"] // 2 - 1
    weights = (out / "model.safetensors").stat().st_size
    assert manifest["bytes"]["after"]["total"] < weights < manifest["bytes"]["after"]["total"] + 64 * 1024


def test_verify_passes_on_a_fresh_output(pruned_copy, capsys):
    assert verify(pruned_copy) == []
    assert cli.main(["verify", str(pruned_copy)]) == 0
    assert "OK" in capsys.readouterr().out


def test_verify_catches_a_flipped_byte(pruned_copy, capsys):
    weights = pruned_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    assert cli.main(["verify", str(pruned_copy)]) == 1
    err = capsys.readouterr().err
    assert "changed: model.safetensors" in err and "1 difference" in err


def test_verify_catches_missing_and_extra_files(pruned_copy, capsys):
    (pruned_copy / "tokenizer.json").unlink()
    (pruned_copy / "notes.txt").write_text("added later")
    assert cli.main(["verify", str(pruned_copy)]) == 1
    err = capsys.readouterr().err
    assert "missing: tokenizer.json" in err and "extra: notes.txt" in err


def test_verify_refuses_an_unpruned_checkpoint(tiny_qwen3_moe, capsys):
    assert cli.main(["verify", str(tiny_qwen3_moe)]) == 2
    assert "no pruning.json" in capsys.readouterr().err


def test_inspect_describes_source_and_pruned_checkpoints(pruned_factory, capsys):
    source, out, _ = pruned_factory("deepseek_v3")
    assert cli.main(["inspect", str(source)]) == 0
    text = capsys.readouterr().out
    assert "family:            deepseek_v3" in text and "MoE layers: 1, 2" in text
    assert "8 routed, top-k 2" in text and "2 groups" in text and "pruned:            no" in text
    assert cli.main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    manifest = json.loads((out / "pruning.json").read_text())
    assert info["experts_per_layer"] == 4 and info["moe_layers"] == [1, 2] and info["top_k"] == 2
    assert info["pruning"]["method"] == "manual" and info["pruning"]["experts_per_layer_before"] == 8
    assert info["bytes"] == manifest["bytes"]["after"] and info["params"] == manifest["params"]["after"]
    assert info["pruning"]["bytes_saved"] == manifest["bytes"]["before"]["total"] - info["bytes"]["total"] > 0


def test_inspect_names_the_supported_families_for_an_unknown_one(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    assert cli.main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unsupported model_type 'llama'" in err and "qwen3_moe" in err and "gpt_oss" in err
