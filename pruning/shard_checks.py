"""Checks a checkpoint's shards before anything reads them in earnest or writes from them.

A download cut short, a shard from another revision, a tensor saved in the
wrong precision: each would otherwise surface as a safetensors or torch
traceback hours into a pass, or as a pruned checkpoint that fails to load.
Everything here reads only the headers `moeprune.formats.checkpoint` has parsed, so it
costs milliseconds, and every error names the tensor and the file.

- truncated file: `read_shard` already refuses a header whose byte ranges run
  past the end of the file (it runs when the checkpoint is opened);
- byte counts: each tensor's byte range must be shape x dtype size;
- missing tensor: every tensor the index lists must be in its shard; every MoE
  layer must hold the same expert-indexed tensors as the others (same names up
  to the layer number), every per-expert tensor must exist for every expert,
  and an MXFP4 `_blocks` half needs its `_scales` half and vice versa;
- wrong dtype: MXFP4 halves are U8; the expert tensors of an unquantized
  checkpoint have the dtype its config.json declares.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.checkpoint import INDEX_NAME, Checkpoint
from pruning import mxfp4

# safetensors dtype name -> bytes per element (the ones a checkpoint here may hold).
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
CONFIG_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
_SHOWN = 5


def open_checked(model_dir, config: dict | None = None) -> Checkpoint:
    """Open a checkpoint (headers only) and check it; the entry point before a pass or a write.

    `config` is its config.json when the caller has read it already. The checkpoint returned is the one
    a run passes down to its pass and its writer, so nothing reads these headers again.
    """
    checkpoint = Checkpoint.open(model_dir, config)
    check_checkpoint(checkpoint)
    return checkpoint


def check_checkpoint(checkpoint: Checkpoint) -> None:
    """Raise a UserError naming the tensor and the file for the first problem found."""
    check_byte_counts(checkpoint)
    check_index(checkpoint)
    check_mxfp4_pairs(checkpoint)
    check_moe_tensors(checkpoint)
    check_dtypes(checkpoint)


def check_byte_counts(checkpoint: Checkpoint) -> None:
    for shard in checkpoint.shards:
        for entry in shard.tensors:
            size = DTYPE_SIZES.get(entry.dtype)
            if size is not None and entry.nbytes != entry.numel * size:
                raise UserError(
                    f"{shard.path}: tensor {entry.name} is {entry.dtype} {list(entry.shape)} "
                    f"({entry.numel * size} bytes) but its header gives it {entry.nbytes} bytes; "
                    "the file is corrupt, download or copy it again"
                )


def check_index(checkpoint: Checkpoint) -> None:
    weight_map = checkpoint.weight_map
    if weight_map is None:
        return
    held = {shard.path.name: {entry.name for entry in shard.tensors} for shard in checkpoint.shards}
    for name, file in weight_map.items():
        if name not in held.get(file, set()):
            raise UserError(
                f"{checkpoint.path / file}: tensor {name} is missing (the index {INDEX_NAME} "
                f"lists it in this file); the shard is from another revision or incomplete, "
                "download it again"
            )


def check_mxfp4_pairs(checkpoint: Checkpoint) -> None:
    where = _file_of(checkpoint)
    names = set(where)
    for name in sorted(names):
        if not mxfp4.is_mxfp4_name(name):
            continue
        base = mxfp4.pair_base(name)
        for partner in (base + mxfp4.BLOCKS_SUFFIX, base + mxfp4.SCALES_SUFFIX):
            if partner not in names:
                raise UserError(
                    f"{where[name]}: MXFP4 tensor {partner} is missing (its other half {name} is "
                    "there); both halves are needed to rebuild the weight"
                )


def check_moe_tensors(checkpoint: Checkpoint) -> None:
    """Every MoE layer holds the same expert-indexed tensors, for every expert."""
    family, config = checkpoint.family, checkpoint.config
    num_experts = family.num_experts(config)
    moe_layers = family.moe_layers(config)
    where = _file_of(checkpoint)
    kinds: dict[int, set[str]] = defaultdict(set)  # layer -> names with the layer number as {layer}
    experts: dict[tuple[int, str], set[int]] = defaultdict(set)  # (layer, per-expert kind) -> experts
    for name in where:
        match = family.match_expert_tensor(name)
        if match:
            layer = int(match.group("layer"))
            kind = _template(name, match, "layer", "expert")
            kinds[layer].add(kind)
            experts[(layer, kind)].add(int(match.group("expert")))
            continue
        match = family.match_dim0_tensor(name)
        if match:
            kinds[int(match.group("layer"))].add(_template(name, match, "layer"))
    expected = set().union(*(kinds[layer] for layer in moe_layers)) if moe_layers else set()
    for layer in moe_layers:
        for kind in sorted(expected - kinds[layer]):
            # A whole per-expert kind is absent in this layer: report its expert 0.
            name = kind.format(layer=layer, expert=0)
            raise UserError(
                f"{_expected_file(checkpoint, where, layer)}: tensor {name} is missing (the other "
                f"MoE layers of this {family.model_type} checkpoint have it); the checkpoint is "
                "incomplete"
            )
    for (layer, kind), present in sorted(experts.items()):
        absent = sorted(set(range(num_experts)) - present)
        if absent:
            names = [kind.format(layer=layer, expert=e) for e in absent[:_SHOWN]]
            more = f" (and {len(absent) - _SHOWN} more)" if len(absent) > _SHOWN else ""
            raise UserError(
                f"{_expected_file(checkpoint, where, layer)}: tensor(s) {', '.join(names)}{more} "
                f"missing; the config declares {num_experts} experts per layer"
            )


def check_dtypes(checkpoint: Checkpoint) -> None:
    config = checkpoint.family.text_config(checkpoint.config)
    declared = (
        config.get("dtype")
        or config.get("torch_dtype")
        or checkpoint.config.get("dtype")
        or checkpoint.config.get("torch_dtype")
    )
    quantized = bool(checkpoint.config.get("quantization_config") or config.get("quantization_config"))
    expected = CONFIG_DTYPES.get(declared) if isinstance(declared, str) else None
    for shard in checkpoint.shards:
        for entry in shard.tensors:
            if mxfp4.is_mxfp4_name(entry.name) and checkpoint.is_expert_tensor(entry.name):
                if entry.dtype != mxfp4.STORED_DTYPE:
                    raise UserError(
                        f"{shard.path}: MXFP4 tensor {entry.name} is {entry.dtype}; MXFP4 blocks and "
                        f"scales are stored as {mxfp4.STORED_DTYPE} (bytes)"
                    )
            elif expected and not quantized and checkpoint.is_expert_tensor(entry.name) and entry.dtype != expected:
                raise UserError(
                    f"{shard.path}: expert tensor {entry.name} is {entry.dtype} but config.json "
                    f"declares dtype {declared} ({expected}); the shard does not belong to this "
                    "config, or the config's dtype is wrong"
                )


def check_expected_names(checkpoint: Checkpoint, names) -> None:
    """For a loader that knows which tensors it will read (e.g. from a model skeleton): all present."""
    where = _file_of(checkpoint)
    missing = [name for name in names if name not in where]
    if missing:
        files = ", ".join(sorted({shard.path.name for shard in checkpoint.shards}))
        more = f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else ""
        raise UserError(
            f"{checkpoint.path}: tensor(s) {', '.join(missing[:_SHOWN])}{more} missing from the "
            f"shards ({files}); the checkpoint is incomplete"
        )


def _file_of(checkpoint: Checkpoint) -> dict[str, Path]:
    return {entry.name: shard.path for shard in checkpoint.shards for entry in shard.tensors}


def _template(name: str, match: re.Match, *groups: str) -> str:
    """The name with the given groups' digits replaced by `{group}` placeholders (braces escaped)."""
    spans = sorted((match.span(group), group) for group in groups)
    out, position = [], 0
    for (start, end), group in spans:
        out.append(name[position:start].replace("{", "{{").replace("}", "}}"))
        out.append("{" + group + "}")
        position = end
    out.append(name[position:].replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def _expected_file(checkpoint: Checkpoint, where: dict[str, Path], layer: int) -> Path:
    """The shard that holds most of this layer's tensors (where a missing one would have been)."""
    marker = re.compile(rf"\.layers\.{layer}\.")
    files = Counter(path for name, path in where.items() if marker.search(name))
    if files:
        return files.most_common(1)[0][0]
    return checkpoint.shards[-1].path if checkpoint.shards else checkpoint.path
