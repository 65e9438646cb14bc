"""Bad shards (truncated, a tensor missing, the wrong dtype) fail with an error naming the tensor and
the file, before any pass or write: nothing appears in the output directory or beside it."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from moeprune import cli
from moeprune.errors import UserError
from pruning.pipeline import run_prune
from pruning.shard_checks import check_expected_names, open_checked
from testkit.tiny_models import build_tiny_model
from tests.support.mxfp4_checkpoint import build_mxfp4_gpt_oss

EXPERT = "model.layers.1.mlp.experts.3.up_proj.weight"


@pytest.fixture(scope="module")
def sharded_source(tmp_path_factory):
    """A tiny Qwen3-MoE saved as several shards plus an index, like real checkpoints."""
    return build_tiny_model("qwen3_moe", tmp_path_factory.mktemp("sharded") / "source", max_shard_size="400KB")


@pytest.fixture(scope="module")
def mxfp4_source(tmp_path_factory):
    return build_mxfp4_gpt_oss(tmp_path_factory.mktemp("mxfp4") / "source")


def copy_of(source, tmp_path):
    return shutil.copytree(source, tmp_path / "broken")


def shard_holding(model_dir, name):
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    return model_dir / index["weight_map"][name]


def rewrite(path, change):
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def prune_fails(source, tmp_path, *words):
    """run_prune with a mask refuses `source`, naming `words`, and leaves nothing behind."""
    mask = tmp_path / "expert_mask.json"
    mask.write_text(json.dumps([[0, 2, 5, 7], [1, 3, 4, 6]]))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UserError) as caught:
        run_prune(source, work / "out", mask_file=mask)
    for word in words:
        assert word in str(caught.value), str(caught.value)
    assert list(work.iterdir()) == []  # no output, no hidden staging directory
    return str(caught.value)


def test_a_truncated_shard_is_refused_naming_the_file_and_a_tensor(sharded_source, tmp_path):
    broken = copy_of(sharded_source, tmp_path)
    shard = shard_holding(broken, EXPERT)
    with open(shard, "r+b") as handle:
        handle.truncate(shard.stat().st_size - 100)
    message = prune_fails(broken, tmp_path, str(shard), "outside the file")
    header = json.loads(shard.read_bytes()[8 : 8 + int.from_bytes(shard.read_bytes()[:8], "little")])
    assert any(name in message for name in header if name != "__metadata__")


def test_a_shard_cut_inside_its_header_is_called_truncated(sharded_source, tmp_path):
    broken = copy_of(sharded_source, tmp_path)
    shard = shard_holding(broken, EXPERT)
    header_len = int.from_bytes(shard.read_bytes()[:8], "little")
    with open(shard, "r+b") as handle:
        handle.truncate(8 + header_len // 2)
    message = prune_fails(broken, tmp_path, str(shard), "truncated", "copy or download it again")
    assert "out of range" not in message


def test_a_file_whose_header_length_is_absurd_is_not_a_safetensors_file(sharded_source, tmp_path):
    broken = copy_of(sharded_source, tmp_path)
    shard = shard_holding(broken, EXPERT)
    data = bytearray(shard.read_bytes())
    data[:8] = (2**40).to_bytes(8, "little")
    shard.write_bytes(bytes(data))
    prune_fails(broken, tmp_path, str(shard), "not a safetensors file", "limit")


def test_a_tensor_missing_from_its_indexed_shard_is_refused(sharded_source, tmp_path):
    broken = copy_of(sharded_source, tmp_path)
    shard = shard_holding(broken, EXPERT)
    rewrite(shard, lambda tensors: tensors.pop(EXPERT))
    prune_fails(broken, tmp_path, str(shard), EXPERT, "missing")


def test_an_expert_missing_from_a_checkpoint_without_index_is_refused(tiny_qwen3_moe, tmp_path):
    broken = copy_of(tiny_qwen3_moe, tmp_path)
    rewrite(broken / "model.safetensors", lambda tensors: tensors.pop(EXPERT))
    prune_fails(broken, tmp_path, str(broken / "model.safetensors"), EXPERT, "8 experts")


def test_a_router_missing_from_one_moe_layer_is_refused(tiny_qwen3_moe, tmp_path):
    broken = copy_of(tiny_qwen3_moe, tmp_path)
    rewrite(broken / "model.safetensors", lambda tensors: tensors.pop("model.layers.1.mlp.gate.weight"))
    prune_fails(broken, tmp_path, "model.layers.1.mlp.gate.weight", "other MoE layers")


def test_an_expert_in_the_wrong_dtype_is_refused(tiny_qwen3_moe, tmp_path):
    broken = copy_of(tiny_qwen3_moe, tmp_path)
    rewrite(broken / "model.safetensors", lambda tensors: tensors.update({EXPERT: tensors[EXPERT].half()}))
    prune_fails(broken, tmp_path, str(broken / "model.safetensors"), EXPERT, "F16", "float32")


def test_mxfp4_halves_must_come_in_pairs_and_as_bytes(mxfp4_source, tmp_path):
    name = "model.layers.0.mlp.experts.down_proj_scales"
    broken = copy_of(mxfp4_source, tmp_path)
    rewrite(broken / "model.safetensors", lambda tensors: tensors.pop(name))
    with pytest.raises(UserError, match=f"{broken / 'model.safetensors'}: MXFP4 tensor {name} is missing"):
        open_checked(broken)
    shutil.rmtree(broken)
    broken = copy_of(mxfp4_source, tmp_path)
    rewrite(broken / "model.safetensors", lambda tensors: tensors.update({name: tensors[name].to(torch.int16)}))
    with pytest.raises(UserError, match=f"MXFP4 tensor {name} is I16"):
        open_checked(broken)


def test_a_loader_names_the_tensors_it_needs_but_cannot_find(tiny_qwen3_moe):
    checkpoint = open_checked(tiny_qwen3_moe)  # intact checkpoints pass every check
    with pytest.raises(UserError, match="model.layers.9.mlp.gate.weight missing from the shards"):
        check_expected_names(checkpoint, ["model.embed_tokens.weight", "model.layers.9.mlp.gate.weight"])


def test_the_cli_prints_the_error_and_exits_2(tiny_qwen3_moe, tmp_path, capsys):
    broken = copy_of(tiny_qwen3_moe, tmp_path)
    rewrite(broken / "model.safetensors", lambda tensors: tensors.pop(EXPERT))
    out = tmp_path / "out"
    assert cli.main(["prune", str(broken), "--out", str(out), "--method", "random", "--ratio", "0.5"]) == 2
    err = capsys.readouterr().err
    assert EXPERT in err and "Traceback" not in err
    assert not out.exists()
