"""MXFP4 expert weights, as gpt-oss checkpoints ship them: the format and its dequantization.

On disk a quantized weight `W` is a pair of uint8 tensors, `<name>_blocks` and
`<name>_scales` (e.g. `model.layers.3.mlp.experts.gate_up_proj_blocks`):

- `_blocks` is [E, R, G, 16]: for each expert and each output row r, the row's
  K = 32 * G input values in G blocks of 32, two 4-bit codes per byte, the
  EVEN element in the low nibble and the odd one in the high nibble;
- `_scales` is [E, R, G]: one E8M0 exponent per block (an unsigned byte,
  bias 127, no mantissa).

Each code is an FP4 E2M1 number (sign bit, 2 exponent bits, 1 mantissa bit):
codes 0..7 are +0, 0.5, 1, 1.5, 2, 3, 4, 6 and codes 8..15 the same negated.
So element k of row r of expert e is

    W_disk[e, r, k] = FP4_E2M1[code(e, r, k)] * 2 ** (scales[e, r, k // 32] - 127)

with code(e, r, k) = blocks[e, r, k // 32, (k % 32) // 2] >> (4 * (k % 2)) & 0xF.

Rows are output features, so `W_disk` is the TRANSPOSE of the weight that
transformers' GptOss experts module multiplies by: `gate_up_proj` [E, H, 2I]
(gate and up interleaved along the last dim, as on disk) and `down_proj`
[E, I, H]. `dequantize_layer` returns that in-memory layout. Every value is a
small-mantissa number times a power of two, so bfloat16 and float32 hold it
exactly (E8M0 255 is NaN in the OCP spec; it comes out as inf or overflow here).

The expert index is dim 0 of both tensors, so the writer slices `_blocks` and
`_scales` like any fused [E, ...] tensor (gpt_oss in `moeprune/formats/families.py`)
and a pruned checkpoint stays MXFP4, with its `quantization_config`.
"""

from __future__ import annotations

from pathlib import Path

FP4_E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
SCALE_BIAS = 127
BLOCK_SIZE = 32
BLOCKS_SUFFIX = "_blocks"
SCALES_SUFFIX = "_scales"
QUANT_METHOD = "mxfp4"
# The stored dtype of both halves (safetensors' name), for the shard checks.
STORED_DTYPE = "U8"
# Experts dequantized at once: bounds the int64 code tensors to a few times one expert's size.
_EXPERTS_PER_STEP = 4


def is_mxfp4(config: dict) -> bool:
    """Whether a config.json dict declares MXFP4-quantized weights."""
    quantization = config.get("quantization_config") or {}
    return isinstance(quantization, dict) and quantization.get("quant_method") == QUANT_METHOD


def is_mxfp4_name(name: str) -> bool:
    return name.endswith((BLOCKS_SUFFIX, SCALES_SUFFIX))


def pair_base(name: str) -> str:
    """`...gate_up_proj_blocks` -> `...gate_up_proj` (the name transformers gives the weight)."""
    for suffix in (BLOCKS_SUFFIX, SCALES_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _torch_dtype(dtype):
    import torch

    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def dequantize(blocks, scales, dtype="bfloat16"):
    """[*, R, G, 16] codes + [*, R, G] exponents -> [*, R, 32 * G] values (the on-disk row layout)."""
    import torch

    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise ValueError(f"MXFP4 blocks and scales are uint8, got {blocks.dtype} and {scales.dtype}")
    if blocks.shape[:-1] != scales.shape or blocks.shape[-1] != BLOCK_SIZE // 2:
        raise ValueError(
            f"MXFP4 blocks {list(blocks.shape)} do not match scales {list(scales.shape)} "
            f"(expected blocks = scales + [{BLOCK_SIZE // 2}])"
        )
    *lead, rows, groups, half = blocks.shape
    flat_blocks = blocks.reshape(-1, rows, groups, half)
    flat_scales = scales.reshape(-1, rows, groups)
    table = torch.tensor(FP4_E2M1, dtype=torch.float32, device=blocks.device)
    out = torch.empty(flat_blocks.shape[0], rows, groups, BLOCK_SIZE, dtype=_torch_dtype(dtype), device=blocks.device)
    for start in range(0, flat_blocks.shape[0], _EXPERTS_PER_STEP):
        codes = flat_blocks[start : start + _EXPERTS_PER_STEP].long()
        values = torch.empty(*codes.shape[:-1], BLOCK_SIZE, dtype=torch.float32, device=blocks.device)
        values[..., 0::2] = table[codes & 0x0F]
        values[..., 1::2] = table[codes >> 4]
        exponent = flat_scales[start : start + _EXPERTS_PER_STEP].to(torch.int32) - SCALE_BIAS
        out[start : start + _EXPERTS_PER_STEP] = torch.ldexp(values, exponent.unsqueeze(-1).float())
    return out.reshape(*lead, rows, groups * BLOCK_SIZE)


def dequantize_layer(tensors: dict, dtype) -> dict:
    """Replace every `<name>_blocks` + `<name>_scales` pair with `<name>` in transformers' layout.

    The layer-streamed observation pass calls this for each decoder layer's tensor dict; other
    tensors pass through unchanged (a dict without MXFP4 tensors comes back as an equal dict).
    A half without its partner is an error: the layer could not be built from it.
    """
    out = {}
    for name, tensor in tensors.items():
        if not is_mxfp4_name(name):
            out[name] = tensor
            continue
        base = pair_base(name)
        if base in out:
            continue
        blocks, scales = tensors.get(base + BLOCKS_SUFFIX), tensors.get(base + SCALES_SUFFIX)
        if blocks is None or scales is None:
            missing = base + (SCALES_SUFFIX if scales is None else BLOCKS_SUFFIX)
            raise ValueError(f"MXFP4 tensor {missing} is missing (its partner {name} is present)")
        out[base] = dequantize(blocks, scales, dtype).transpose(-1, -2).contiguous()
    return out


def from_pretrained_options(source_dir) -> dict:
    """Extra `from_pretrained` arguments that load an MXFP4 checkpoint on any machine.

    transformers 5 runs MXFP4 natively only with triton + the `kernels` package (and needs
    `accelerate` unless told to dequantize); `Mxfp4Config(dequantize=True)` instead turns the
    experts into plain weights at load time, on the CPU too. Empty for other checkpoints.
    `source_dir` may be an opened `Checkpoint` (its config is then not read again).
    """
    if not is_mxfp4(_config_of(source_dir)):
        return {}
    from transformers import Mxfp4Config

    return {"quantization_config": Mxfp4Config(dequantize=True)}


def _config_of(source) -> dict:
    """config.json of a checkpoint directory ({} without one), or of an opened `Checkpoint`."""
    import json

    from moeprune.formats.checkpoint import Checkpoint

    if isinstance(source, Checkpoint):
        return source.config
    path = Path(source) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def match_dtype(model, source_dir, dtype):
    """Bring dequantized MXFP4 experts to the dtype the rest of the model was loaded in.

    transformers dequantizes to bfloat16 whatever `dtype` says. MXFP4 values are exact in
    bfloat16, so the cast up loses nothing, and a float32 whole-model pass then computes in
    float32 like the layer-streamed one. Only the weights stored as MXFP4 pairs are touched
    (found by name in the shard headers); a no-op for other checkpoints.
    """
    if not from_pretrained_options(source_dir):
        return model
    from moeprune.formats.checkpoint import opened

    target = _torch_dtype(dtype)
    bases = {pair_base(entry.name) for entry in opened(source_dir).tensors() if is_mxfp4_name(entry.name)}
    for name, parameter in model.named_parameters():
        if name in bases and parameter.dtype != target:
            parameter.data = parameter.data.to(target)
    return model
