"""Dequantize-on-write (`moeprune prune --dequantize`): a pruned gpt-oss whose MXFP4 experts are plain weights.

vLLM CPU runs MXFP4 experts only on CPUs with AMX tiles. A checkpoint whose experts are
written in the stock layout of an unquantized gpt-oss serves on any x86 CPU instead:

    <base>_blocks [E, R, G, 16] U8  +  <base>_scales [E, R, G] U8   ->   <base> [E', 32 * G, R]

(`base` is `...mlp.experts.gate_up_proj` or `...down_proj`, E' the kept experts, R the rows as stored,
i.e. the output features; the written tensor is transposed to transformers' `[E, in, out]` layout,
what `save_pretrained` writes for a bf16 gpt-oss). The biases are already plain tensors and are sliced
like any other. config.json loses its `quantization_config`.

The values are those of `pruning.mxfp4.dequantize`: an FP4 code times a power of two, exact in bfloat16
and float32, so transformers computes the same on both checkpoints. Written in the dtype config.json
declares (bfloat16 for every published gpt-oss; float32 kept as float32), another is refused.

Memory: a dequantized output shard is written one kept expert at a time, read straight from the source
shard(s) at the expert's byte offsets (a `_blocks` half and its `_scales` half may sit in different
shards), so a run holds one expert's codes and values, whatever the model size. The output is hashed as
it is written; the source shards are hashed separately (or found in the hash cache) for provenance.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.checkpoint import Checkpoint, Shard, TensorEntry
from pruning import mxfp4
from pruning.hash_cache import FileIdentity, SourceHashCache
from pruning.shard_copy import CHUNK, _header, _read_fully, _write_all
from pruning.shard_plan import OutTensor, ShardPlan

# config.json dtype -> (torch dtype name, safetensors dtype): those that hold every MXFP4 value exactly.
TARGET_DTYPES = {"bfloat16": ("bfloat16", "BF16"), "float32": ("float32", "F32")}
_ITEMSIZE = {"BF16": 2, "F32": 4}


@dataclass(frozen=True)
class Located:
    entry: TensorEntry
    path: Path


@dataclass(frozen=True)
class DequantizedTensor:
    """An output tensor computed from the kept experts of one MXFP4 pair."""

    name: str
    dtype: str  # safetensors dtype of the output
    shape: tuple[int, ...]  # [kept, 32 * G, R]
    blocks: Located
    scales: Located
    keep: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * _ITEMSIZE[self.dtype]


@dataclass(frozen=True)
class DequantizedShardPlan:
    """A ShardPlan in which MXFP4 `_blocks` tensors became DequantizedTensors and `_scales` were dropped."""

    source: Shard  # plain tensors are copied from it
    tensors: tuple[OutTensor | DequantizedTensor, ...]

    @property
    def name(self) -> str:
        return self.source.path.name


def target_dtype(config: dict) -> str:
    """The torch dtype name dequantized experts are written in: config.json's, bfloat16 if it names none."""
    declared = config.get("dtype") or config.get("torch_dtype") or "bfloat16"
    if declared not in TARGET_DTYPES:
        raise UserError(
            f"config.json declares dtype {declared!r}; --dequantize writes the MXFP4 experts in "
            f"{' or '.join(TARGET_DTYPES)} (which hold their values exactly)",
            param="dequantize",
        )
    return declared


def without_quantization(config: dict) -> dict:
    return {key: value for key, value in config.items() if key != "quantization_config"}


def require_quantized(config: dict) -> None:
    """`--dequantize` on a checkpoint with nothing to dequantize is a mistake worth a clear error."""
    if not mxfp4.is_mxfp4(config):
        quantization = config.get("quantization_config")
        what = (
            f"quantized with {quantization.get('quant_method')!r}, which --dequantize does not read"
            if isinstance(quantization, dict) and quantization
            else "not quantized (no quantization_config in config.json)"
        )
        raise UserError(
            f"--dequantize turns MXFP4 experts (gpt-oss) into plain weights, but this checkpoint is "
            f"{what}; drop --dequantize",
            param="dequantize",
        )


def dequantized_plans(
    checkpoint: Checkpoint, plans: list[ShardPlan], kept: dict[int, list[int]], config: dict
) -> list[ShardPlan | DequantizedShardPlan]:
    """The writer's plans with every MXFP4 pair replaced by its dequantized tensor (in the `_blocks` half's shard)."""
    stored = TARGET_DTYPES[target_dtype(config)][1]
    located = {entry.name: Located(entry, shard.path) for shard in checkpoint.shards for entry in shard.tensors}
    out: list[ShardPlan | DequantizedShardPlan] = []
    for plan in plans:
        if not any(mxfp4.is_mxfp4_name(tensor.name) for tensor in plan.tensors):
            out.append(plan)
            continue
        tensors: list[OutTensor | DequantizedTensor] = []
        for tensor in plan.tensors:
            if tensor.name.endswith(mxfp4.SCALES_SUFFIX):
                continue  # folded into the tensor of its `_blocks` half
            if not tensor.name.endswith(mxfp4.BLOCKS_SUFFIX):
                tensors.append(tensor)
                continue
            base = mxfp4.pair_base(tensor.name)
            blocks, scales = located[tensor.name], located[base + mxfp4.SCALES_SUFFIX]
            experts, rows, groups, _ = blocks.entry.shape
            match = checkpoint.family.match_dim0_tensor(tensor.name)
            keep = tuple(kept[int(match.group("layer"))]) if match else tuple(range(experts))
            tensors.append(
                DequantizedTensor(base, stored, (len(keep), groups * mxfp4.BLOCK_SIZE, rows), blocks, scales, keep)
            )
        out.append(DequantizedShardPlan(plan.source, tuple(tensors)))
    return out


def write_dequantized_shard(plan: DequantizedShardPlan, dest: Path, cache: SourceHashCache) -> tuple[str, str]:
    """Write one output shard (plain tensors copied, MXFP4 pairs dequantized per expert); return both sha256s."""
    from pruning.shard_copy import source_sha256

    paths = {plan.source.path} | {
        part.path
        for tensor in plan.tensors
        if isinstance(tensor, DequantizedTensor)
        for part in (tensor.blocks, tensor.scales)
    }
    identities = {path: FileIdentity.of(path) for path in paths}
    source_hash = source_sha256(plan.source.path, cache)
    digest = hashlib.sha256()
    handles = {path: open(path, "rb", buffering=0) for path in sorted(paths)}
    try:
        with open(dest, "wb", buffering=0) as dst:

            def put(data) -> None:
                _write_all(dst, data)
                digest.update(data)

            put(_header(plan))  # type: ignore[arg-type]  # name/dtype/shape/nbytes: what _header reads
            for tensor in plan.tensors:
                if isinstance(tensor, DequantizedTensor):
                    _write_experts(tensor, handles, put)
                else:
                    _copy_ranges(tensor, handles[plan.source.path], put)
            os.fsync(dst.fileno())
    finally:
        for handle in handles.values():
            handle.close()
    if any(FileIdentity.of(path) != identity for path, identity in identities.items()):
        raise UserError(f"a source shard of {plan.name} changed while it was being read; run again")
    return source_hash, digest.hexdigest()


def _read(handle, start: int, size: int) -> bytearray:
    buffer = bytearray(size)
    handle.seek(start)
    if _read_fully(handle, memoryview(buffer)) != size:
        raise UserError(f"{handle.name} ended early; it changed while it was being read, or is truncated")
    return buffer


def _copy_ranges(tensor: OutTensor, handle, put) -> None:
    for start, end in tensor.ranges:
        for lo in range(start, end, CHUNK):
            put(_read(handle, lo, min(CHUNK, end - lo)))


def _write_experts(tensor: DequantizedTensor, handles: dict, put) -> None:
    import torch

    blocks, scales = tensor.blocks.entry, tensor.scales.entry
    experts = blocks.shape[0]
    block_row, scale_row = blocks.nbytes // experts, scales.nbytes // experts
    dtype = getattr(torch, {"BF16": "bfloat16", "F32": "float32"}[tensor.dtype])
    for expert in tensor.keep:
        codes = torch.frombuffer(
            _read(handles[tensor.blocks.path], blocks.start + expert * block_row, block_row), dtype=torch.uint8
        ).reshape(blocks.shape[1:])
        exponents = torch.frombuffer(
            _read(handles[tensor.scales.path], scales.start + expert * scale_row, scale_row), dtype=torch.uint8
        ).reshape(scales.shape[1:])
        values = mxfp4.dequantize(codes, exponents, dtype).transpose(-1, -2).contiguous()  # [32 * G, R]
        put(values.view(torch.uint8).numpy().tobytes())
