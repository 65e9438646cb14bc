"""`moeprune prune --dequantize` (issue 21 item 6): a pruned gpt-oss with its MXFP4 experts written as plain weights.

The source is the tiny gpt-oss in bfloat16 (as every published gpt-oss) with MXFP4 experts
(`tests/support/mxfp4_checkpoint.py`). Exactness: transformers loading the pruned MXFP4 checkpoint
(it dequantizes on the CPU) and transformers loading the dequantized one compute bit-equal logits,
uniform and uneven plans alike, because MXFP4 values are exact in bfloat16 and both end up with the
same weights.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from moeprune import cli
from moeprune.errors import UserError
from moeprune.formats.checkpoint import load_config
from pruning import mxfp4, pipeline
from pruning.pipeline import NO_AMX_NOTE, run_prune
from pruning.writer import write_pruned
from testkit.tiny_models import auto_model_class, build_tiny_model
from tests.pruning.conftest import PROMPTS
from tests.support.mxfp4_checkpoint import load_mxfp4_model, quantize_checkpoint

PLANS = {"uniform": {0: [0, 2, 5, 7], 1: [1, 3, 4, 6]}, "uneven": {0: [1, 2, 6], 1: [0, 3, 4, 5, 7]}}
EXPERT_PARTS = ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias")


@pytest.fixture(scope="module")
def bf16_mxfp4(tmp_path_factory):
    return quantize_checkpoint(
        build_tiny_model("gpt_oss", tmp_path_factory.mktemp("gpt-oss") / "src", dtype="bfloat16")
    )


@pytest.fixture(scope="module")
def stock_bf16(tmp_path_factory):
    """What save_pretrained writes for an unquantized bf16 gpt-oss: the layout --dequantize must match."""
    return build_tiny_model("gpt_oss", tmp_path_factory.mktemp("gpt-oss-stock") / "stock", dtype="bfloat16")


def _load_plain(path: Path, dtype: str):
    import moeprune.models  # noqa: F401  (the uneven gpt-oss class)

    model, info = auto_model_class("gpt_oss").from_pretrained(
        path, dtype=getattr(torch, dtype), output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


def _load_mxfp4(path: Path, dtype: str):
    import moeprune.models  # noqa: F401

    model, info = load_mxfp4_model(path, dtype)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    # transformers dequantizes MXFP4 to bfloat16 whatever `dtype` says; bring the experts to `dtype` (exact).
    return mxfp4.match_dtype(model, path, dtype)


def _logits(model, tokenizer):
    with torch.no_grad():
        return [model(input_ids=torch.tensor([tokenizer.encode(text)])).logits for text in PROMPTS]


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_dequantized_checkpoint_computes_bit_equal_logits_to_the_mxfp4_one(plan, dtype, bf16_mxfp4, tmp_path):
    from transformers import AutoTokenizer

    kept = PLANS[plan]
    quantized = write_pruned(bf16_mxfp4, tmp_path / "mxfp4", kept, {})
    plain = write_pruned(bf16_mxfp4, tmp_path / "plain", kept, {}, dequantize=True)
    expected_model, actual_model = _load_mxfp4(quantized, dtype), _load_plain(plain, dtype)
    expected_weights, actual_weights = expected_model.state_dict(), actual_model.state_dict()
    assert sorted(actual_weights) == sorted(expected_weights)
    assert all(torch.equal(actual_weights[name], expected_weights[name]) for name in expected_weights)
    tokenizer = AutoTokenizer.from_pretrained(plain)
    for actual, expected in zip(_logits(actual_model, tokenizer), _logits(expected_model, tokenizer)):
        assert torch.equal(actual, expected)


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_dequantized_checkpoint_is_the_stock_bf16_layout_without_quantization_config(
    plan, bf16_mxfp4, stock_bf16, tmp_path
):
    kept = PLANS[plan]
    out = write_pruned(bf16_mxfp4, tmp_path / "plain", kept, {}, dequantize=True)
    config = load_config(out)
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    # pruning.json says the experts are not the source's bytes; a prune that keeps MXFP4 says nothing
    assert json.loads((out / "pruning.json").read_text())["dequantized"] == {"from": "mxfp4", "to": "bfloat16"}
    kept_mxfp4 = write_pruned(bf16_mxfp4, tmp_path / "mxfp4", kept, {})
    assert "dequantized" not in json.loads((kept_mxfp4 / "pruning.json").read_text())
    assert not any("quantization_config" in json.dumps(layer) for layer in config.get("per_layer_config") or [])
    stock, written = load_file(str(stock_bf16 / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert sorted(written) == sorted(stock)  # same names: no *_blocks / *_scales left
    source = load_file(str(bf16_mxfp4 / "model.safetensors"))
    for name, tensor in written.items():
        assert tensor.dtype == torch.bfloat16, name
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        per_expert = layer is not None and ".mlp." in name  # gpt-oss's MLP is the router and the experts
        if per_expert:
            assert tensor.shape == (len(kept[layer]), *stock[name].shape[1:]), name
        else:
            assert tensor.shape == stock[name].shape, name
        if name.endswith(("gate_up_proj", "down_proj")):
            rows = mxfp4.dequantize(
                source[name + "_blocks"][kept[layer]], source[name + "_scales"][kept[layer]], "bfloat16"
            )
            assert torch.equal(tensor, rows.transpose(-1, -2))
        elif per_expert:
            assert torch.equal(tensor, source[name][kept[layer]])
        else:
            assert torch.equal(tensor, source[name])


def _split_pairs_across_shards(source: Path, out: Path) -> Path:
    """The same checkpoint in two shards, every `_blocks` half in one and its `_scales` half in the other."""
    import shutil

    shutil.copytree(source, out)
    tensors = load_file(str(out / "model.safetensors"))
    (out / "model.safetensors").unlink()
    first = {name: t for name, t in tensors.items() if not name.endswith("_scales")}
    second = {name: t for name, t in tensors.items() if name.endswith("_scales")}
    names = {"model-00001-of-00002.safetensors": first, "model-00002-of-00002.safetensors": second}
    for file, part in names.items():
        save_file(part, str(out / file), metadata={"format": "pt"})
    weight_map = {name: file for file, part in names.items() for name in part}
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def test_a_blocks_half_and_its_scales_half_in_different_shards(bf16_mxfp4, tmp_path):
    split = _split_pairs_across_shards(bf16_mxfp4, tmp_path / "split")
    kept = PLANS["uneven"]
    one = write_pruned(bf16_mxfp4, tmp_path / "one", kept, {}, dequantize=True)
    two = write_pruned(split, tmp_path / "two", kept, {}, dequantize=True)
    expected = load_file(str(one / "model.safetensors"))
    actual: dict = {}
    for shard in sorted(two.glob("*.safetensors")):
        actual.update(load_file(str(shard)))
    assert sorted(actual) == sorted(expected) and all(torch.equal(actual[n], expected[n]) for n in expected)
    index = json.loads((two / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(expected)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in expected.values())


def test_the_flag_is_generated_with_its_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--dequantize" in text and "AMX" in text


def _mask(tmp_path: Path, kept: dict) -> Path:
    path = tmp_path / "mask.json"
    path.write_text(json.dumps([kept[layer] for layer in sorted(kept)]))
    return path


def test_dequantize_on_an_unquantized_checkpoint_is_a_clear_error_before_writing(tiny_qwen3_moe, tmp_path):
    with pytest.raises(UserError, match="not quantized.*drop --dequantize") as caught:
        run_prune(tiny_qwen3_moe, tmp_path / "out", mask_file=_mask(tmp_path, PLANS["uniform"]), dequantize=True)
    assert caught.value.param == "dequantize"
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="not quantized"):
        write_pruned(tiny_qwen3_moe, tmp_path / "out", PLANS["uniform"], {}, dequantize=True)
    code = cli.main(
        [
            "prune",
            str(tiny_qwen3_moe),
            "--out",
            str(tmp_path / "cli"),
            "--mask",
            str(_mask(tmp_path, PLANS["uniform"])),
            "--dequantize",
        ]
    )
    assert code == 2 and not (tmp_path / "cli").exists()


@pytest.mark.parametrize("amx", [False, True])
def test_mxfp4_kept_as_mxfp4_gets_a_note_on_a_cpu_without_amx_and_is_still_written(
    amx, bf16_mxfp4, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(pipeline, "cpu_has_amx", lambda: amx)
    out = run_prune(bf16_mxfp4, tmp_path / "mxfp4", mask_file=_mask(tmp_path, PLANS["uniform"]))
    assert load_config(out)["quantization_config"]["quant_method"] == "mxfp4"
    err = capsys.readouterr().err
    assert (NO_AMX_NOTE in err) is (not amx)
    if not amx:
        assert "vLLM CPU" in err and "--dequantize" in err
    out = run_prune(bf16_mxfp4, tmp_path / "plain", mask_file=_mask(tmp_path, PLANS["uniform"]), dequantize=True)
    assert "quantization_config" not in load_config(out)
    assert NO_AMX_NOTE not in capsys.readouterr().err


def test_no_note_for_an_unquantized_checkpoint(tiny_qwen3_moe, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "cpu_has_amx", lambda: False)
    run_prune(tiny_qwen3_moe, tmp_path / "out", mask_file=_mask(tmp_path, PLANS["uniform"]))
    assert NO_AMX_NOTE not in capsys.readouterr().err


def test_global_allocation_with_dequantize_writes_an_uneven_plain_checkpoint(bf16_mxfp4, tmp_path):
    calibration = tmp_path / "calibration.jsonl"
    calibration.write_text("".join(json.dumps({"text": text}) + "\n" for text in PROMPTS * 2))
    out = run_prune(
        bf16_mxfp4,
        tmp_path / "out",
        method="frequency",
        ratio=0.5,
        allocation="global",
        calibration=[calibration],
        samples=6,
        max_tokens=32,
        domain_gate=False,
        progress=False,
        dequantize=True,
    )
    kept = {int(k): v for k, v in json.loads((out / "pruning.json").read_text())["kept_experts"].items()}
    config = load_config(out)
    assert "quantization_config" not in config
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        for layer, experts in kept.items():
            tensor = handle.get_tensor(f"model.layers.{layer}.mlp.experts.gate_up_proj")
            assert tensor.dtype == torch.bfloat16 and tensor.shape[0] == len(experts)
    _load_plain(out, "bfloat16")


@pytest.mark.slow
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_vllm_cpu_serves_the_dequantized_checkpoint_like_transformers(plan, bf16_mxfp4, tmp_path):
    """A real vLLM CPU engine (no AMX needed) on the dequantized pruned gpt-oss: greedy ids = transformers'.

    The engine runs in float32 (the bf16 weights are exact in it), as the fp32 gpt-oss engines of
    tests/pruning/test_vllm_uneven.py, so greedy ids must be equal, not just close."""
    import httpx
    from transformers import AutoTokenizer

    from testkit.vllm_plugin_env import plugin_pythonpath
    from testkit.vllm_server import vllm_server
    from tests.pruning.test_vllm_uneven import NEW_TOKENS, PROMPT, transformers_greedy

    path = write_pruned(bf16_mxfp4, tmp_path / "plain", PLANS[plan], {}, dequantize=True)
    prompt_ids = AutoTokenizer.from_pretrained(path).encode(PROMPT)
    scratch = tmp_path / "engine"
    scratch.mkdir()
    with vllm_server(
        path,
        scratch,
        served_name="plain",
        dtype="float32",
        max_model_len=256,
        env={"PYTHONPATH": plugin_pythonpath(scratch)},
        timeout=600,
    ) as url:
        reply = httpx.post(
            f"{url}/v1/completions",
            timeout=120,
            json={
                "model": "plain",
                "prompt": prompt_ids,
                "max_tokens": NEW_TOKENS,
                "temperature": 0,
                "ignore_eos": True,
                "logprobs": 1,
                "return_tokens_as_token_ids": True,
            },
        ).json()
    ids = [int(token.split(":")[1]) for token in reply["choices"][0]["logprobs"]["tokens"]]
    assert ids == transformers_greedy(path, prompt_ids)


def test_the_cli_writes_a_dequantized_checkpoint_and_says_it_grew(bf16_mxfp4, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        cli.main(
            [
                "prune",
                str(bf16_mxfp4),
                "--out",
                str(out),
                "--mask",
                str(_mask(tmp_path, PLANS["uniform"])),
                "--dequantize",
            ]
        )
        == 0
    )
    assert "quantization_config" not in load_config(out)
    assert "larger than the source" in capsys.readouterr().out


def test_experts_are_dequantized_one_at_a_time(bf16_mxfp4, tmp_path, monkeypatch):
    """Bounded memory: each dequantization sees one kept expert's codes, never a whole [E, ...] tensor."""
    seen = []
    real = mxfp4.dequantize

    def spy(blocks, scales, dtype="bfloat16"):
        seen.append(tuple(blocks.shape))
        return real(blocks, scales, dtype)

    monkeypatch.setattr(mxfp4, "dequantize", spy)
    kept = PLANS["uneven"]
    write_pruned(bf16_mxfp4, tmp_path / "plain", kept, {}, dequantize=True)
    assert len(seen) == 2 * sum(len(experts) for experts in kept.values())  # gate_up and down, per kept expert
    assert all(len(shape) == 3 for shape in seen)  # [R, G, 16]: no expert dim
