"""TESTING ONLY: a tiny gpt-oss checkpoint with MXFP4 experts, as the real gpt-oss ships them.

`build_mxfp4_gpt_oss(out_dir)` builds the tiny random gpt-oss of
`testkit/tiny_models.py`, then replaces its fused expert weights
`mlp.experts.{gate_up_proj,down_proj}` by `_blocks` / `_scales` pairs quantized
here (the format is documented in `pruning/mxfp4.py`) and adds the
`quantization_config` real checkpoints carry. transformers loads it with
`Mxfp4Config(dequantize=True)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pruning.mxfp4 import BLOCK_SIZE, BLOCKS_SUFFIX, FP4_E2M1, SCALE_BIAS, SCALES_SUFFIX

# As in openai/gpt-oss-20b's config.json: only the experts are quantized.
QUANTIZATION_CONFIG = {
    "quant_method": "mxfp4",
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
}
_QUANTIZED = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def quantize(rows):
    """[*, R, K] float (K a multiple of 32) -> ([*, R, K/32, 16] uint8 codes, [*, R, K/32] uint8 exponents).

    Each block of 32 gets the smallest power-of-two scale that brings its largest magnitude
    within FP4's 6, and every value the nearest FP4 code (ties to the smaller magnitude).
    """
    import torch

    *lead, width = rows.shape
    if width % BLOCK_SIZE:
        raise ValueError(f"MXFP4 rows hold multiples of {BLOCK_SIZE} values, got {width}")
    blocks = rows.float().reshape(*lead, width // BLOCK_SIZE, BLOCK_SIZE)
    amax = blocks.abs().amax(dim=-1)
    exponent = torch.ceil(torch.log2(amax.clamp_min(2.0**-140) / 6.0)).clamp(-SCALE_BIAS, 255 - SCALE_BIAS)
    scaled = blocks / torch.exp2(exponent).unsqueeze(-1)
    magnitudes = torch.tensor(FP4_E2M1[:8])
    codes = (scaled.abs().unsqueeze(-1) - magnitudes).abs().argmin(dim=-1)
    codes = codes | ((scaled < 0).long() << 3)
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    return packed, (exponent + SCALE_BIAS).to(torch.uint8)


def quantize_checkpoint(model_dir: str | Path) -> Path:
    """Rewrite a saved tiny gpt-oss checkpoint's expert weights in place as MXFP4."""
    from safetensors.torch import load_file, save_file

    model_dir = Path(model_dir)
    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    out = {}
    for name, tensor in tensors.items():
        if name.endswith(_QUANTIZED):
            # transformers' layout is the transpose of the on-disk rows (output features first).
            blocks, scales = quantize(tensor.transpose(-1, -2))
            out[name + BLOCKS_SUFFIX], out[name + SCALES_SUFFIX] = blocks.contiguous(), scales.contiguous()
        else:
            out[name] = tensor
    save_file(out, str(path), metadata={"format": "pt"})
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["quantization_config"] = dict(QUANTIZATION_CONFIG)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return model_dir


def build_mxfp4_gpt_oss(out_dir: str | Path, seed: int = 0) -> Path:
    from testkit.tiny_models import build_tiny_model

    return quantize_checkpoint(build_tiny_model("gpt_oss", out_dir, seed=seed))


def load_mxfp4_model(model_dir: str | Path, dtype: str = "float32"):
    """The checkpoint loaded by transformers, experts dequantized (the CPU has no MXFP4 kernels)."""
    import torch
    from transformers import AutoModelForCausalLM, Mxfp4Config

    model, info = AutoModelForCausalLM.from_pretrained(
        str(model_dir),
        dtype=getattr(torch, dtype),
        quantization_config=Mxfp4Config(dequantize=True),
        output_loading_info=True,
    )
    return model.eval(), info
