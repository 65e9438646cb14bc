"""gpt-oss MXFP4 experts: the dequantization formula, and a synthetic MXFP4 checkpoint observed,
pruned (staying MXFP4), loaded by transformers, with the pruning invariant holding."""

import json

import pytest
import torch
from safetensors import safe_open

from moeprune.formats.checkpoint import load_config
from moeprune.formats.families import family_for
from pruning.mxfp4 import dequantize, dequantize_layer
from pruning.routing_mask import experts_masked
from tests.pruning.conftest import PROMPTS
from tests.support.mxfp4_checkpoint import build_mxfp4_gpt_oss, load_mxfp4_model, quantize

EXPERTS = "model.layers.0.mlp.experts."


def test_dequantize_follows_the_documented_formula():
    # One row of one expert, 32 values: byte j holds element 2j (low nibble) and 2j+1 (high nibble).
    codes = torch.zeros(1, 1, 1, 16, dtype=torch.uint8)
    codes[0, 0, 0, 0] = 0x21  # element 0: code 1 (+0.5), element 1: code 2 (+1.0)
    codes[0, 0, 0, 1] = 0xF7  # element 2: code 7 (+6.0), element 3: code 15 (-6.0)
    codes[0, 0, 0, 2] = 0x9B  # element 4: code 11 (-1.5), element 5: code 9 (-0.5)
    scales = torch.tensor([[[128]]], dtype=torch.uint8)  # E8M0 with bias 127: x 2 ** 1
    values = dequantize(codes, scales, torch.float32)
    assert values.shape == (1, 1, 32)
    assert values[0, 0, :6].tolist() == [1.0, 2.0, 12.0, -12.0, -3.0, -1.0]
    assert values[0, 0, 6:].abs().sum() == 0
    small = dequantize(codes, torch.tensor([[[125]]], dtype=torch.uint8), torch.bfloat16)  # x 2 ** -2
    assert small.dtype == torch.bfloat16 and small[0, 0, :2].tolist() == [0.125, 0.25]


def test_dequantize_layer_gives_transformers_layout_and_passes_other_tensors_through():
    rows = torch.randn(3, 8, 64)  # [E, R, K] as stored: rows are output features
    blocks, scales = quantize(rows)
    assert blocks.shape == (3, 8, 2, 16) and scales.shape == (3, 8, 2)
    bias = torch.randn(3, 8)
    out = dequantize_layer(
        {"experts.down_proj_blocks": blocks, "experts.down_proj_scales": scales, "experts.down_proj_bias": bias},
        torch.float32,
    )
    assert sorted(out) == ["experts.down_proj", "experts.down_proj_bias"]
    assert out["experts.down_proj"].shape == (3, 64, 8)  # transposed: [E, K, R]
    assert torch.equal(out["experts.down_proj"], dequantize(blocks, scales, torch.float32).transpose(-1, -2))
    assert out["experts.down_proj_bias"] is bias
    # 4-bit values with a shared power-of-two scale: close to the original, not equal.
    error = (out["experts.down_proj"].transpose(-1, -2) - rows).norm() / rows.norm()
    assert 0 < error < 0.2
    plain = {"mlp.router.weight": torch.randn(3, 8)}
    assert dequantize_layer(plain, torch.float32) == plain
    with pytest.raises(ValueError, match="experts.down_proj_scales is missing"):
        dequantize_layer({"experts.down_proj_blocks": blocks}, torch.float32)


@pytest.fixture(scope="module")
def mxfp4_source(tmp_path_factory):
    return build_mxfp4_gpt_oss(tmp_path_factory.mktemp("mxfp4-gpt-oss") / "source")


def test_transformers_dequantizes_the_synthetic_checkpoint_exactly_as_documented(mxfp4_source):
    model, info = load_mxfp4_model(mxfp4_source)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with safe_open(str(mxfp4_source / "model.safetensors"), "pt") as handle:
        layer = {
            name: handle.get_tensor(EXPERTS + name)
            for name in ("gate_up_proj_blocks", "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales")
        }
    ours = dequantize_layer(layer, torch.float32)
    experts = model.model.layers[0].mlp.experts
    assert torch.equal(ours["gate_up_proj"], experts.gate_up_proj.float())
    assert torch.equal(ours["down_proj"], experts.down_proj.float())


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "calibration.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in PROMPTS * 2))
    return path


def observe_modes():
    """The observation passes `run_prune` offers (the layer-streamed one once it exists)."""
    from pruning.config import PruneConfig  # run_prune's options (it takes them as **options)

    return ["stream", "whole"] if "observe" in PruneConfig.model_fields else [None]


@pytest.mark.parametrize("observe", observe_modes())
def test_mxfp4_checkpoint_is_observed_pruned_kept_mxfp4_and_keeps_the_invariant(
    observe, mxfp4_source, calibration_file, tmp_path
):
    from transformers import AutoTokenizer

    from pruning.pipeline import run_prune

    options = {} if observe is None else {"observe": observe}
    out = run_prune(
        mxfp4_source,
        tmp_path / "pruned",
        method="reap",
        ratio=0.5,
        calibration=[calibration_file],
        samples=6,
        max_tokens=32,
        scores_out=tmp_path / "stats.json",
        progress=False,
        **options,
    )
    manifest = json.loads((out / "pruning.json").read_text())
    kept = {int(layer): experts for layer, experts in manifest["kept_experts"].items()}
    assert all(len(experts) == 4 for experts in kept.values())
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["layers"]["0"]["tokens"] > 0

    # Still MXFP4: the quantization config, and U8 halves holding exactly the kept experts' bytes.
    config = load_config(out)
    assert config["quantization_config"]["quant_method"] == "mxfp4" and config["num_local_experts"] == 4
    with (
        safe_open(str(mxfp4_source / "model.safetensors"), "pt") as src,
        safe_open(str(out / "model.safetensors"), "pt") as dst,
    ):
        assert not any(name.endswith(("gate_up_proj", "down_proj")) for name in dst.keys())
        for part in ("gate_up_proj_blocks", "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales"):
            for layer, experts in kept.items():
                name = f"model.layers.{layer}.mlp.experts.{part}"
                assert dst.get_tensor(name).dtype == torch.uint8
                assert torch.equal(dst.get_tensor(name), src.get_tensor(name)[experts])

    # Loaded by transformers, it computes what the source computes with the removed experts routed around.
    pruned, info = load_mxfp4_model(out)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    source, _ = load_mxfp4_model(mxfp4_source)
    family = family_for(load_config(mxfp4_source))
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        batches = [torch.tensor([tokenizer.encode(text)]) for text in PROMPTS]
        unmasked = [source(input_ids=ids).logits for ids in batches]
        with experts_masked(source, family, kept, 8):
            expected = [source(input_ids=ids).logits for ids in batches]
        actual = [pruned(input_ids=ids).logits for ids in batches]
    assert max((a - e).abs().max().item() for a, e in zip(actual, expected)) <= 1e-5
    assert max((a - u).abs().max().item() for a, u in zip(actual, unmasked)) > 1e-2


def test_whole_model_pass_loads_mxfp4_experts_in_the_requested_dtype(mxfp4_source):
    from pruning.observe import load_model

    model = load_model(mxfp4_source, family_for(load_config(mxfp4_source)), dtype="float32")
    experts = model.model.layers[1].mlp.experts
    assert experts.gate_up_proj.dtype == torch.float32 and experts.down_proj.dtype == torch.float32


def test_parameter_counts_see_two_weights_per_mxfp4_byte_and_no_weights_in_scales():
    from moeprune.formats.checkpoint import TensorEntry, parameter_count

    assert parameter_count(TensorEntry("mlp.experts.down_proj_blocks", "U8", (4, 8, 2, 16), 0, 1024)) == 2048
    assert parameter_count(TensorEntry("mlp.experts.down_proj_scales", "U8", (4, 8, 2), 0, 64)) == 0
    assert parameter_count(TensorEntry("mlp.router.weight", "BF16", (4, 8), 0, 64)) == 32
