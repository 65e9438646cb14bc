"""The streaming writer: a pruned copy of a safetensors checkpoint, all or nothing.

Each source shard is read once, front to back, in fixed-size chunks: the
chunk feeds the source hash, and the parts of it that belong to kept tensors
go straight to the output shard (and its hash). The two sha256s run on their
own threads. Memory is a few chunk buffers, whatever the model or tensor
size. Everything is written into a hidden temporary directory next to the
target, which is renamed into place only when complete, so an interrupted
run never leaves a half-written output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pruning.checkpoint import INDEX_NAME, OTHER_WEIGHT_SUFFIXES, Checkpoint
from moeprune.errors import UserError
from pruning.hashing import sha256_file
from pruning.manifest import MANIFEST_NAME, MASK_NAME, build_manifest, mask_rows
from pruning.shard_plan import ShardPlan, plan_shards
from pruning.staging import staging_dir, publish

log = logging.getLogger(__name__)
CHUNK = 16 * 1024 * 1024
# Buffers in flight: one being read while the hash threads finish the others.
_BUFFERS = 3
# Test hook: seconds to pause after each output shard, so a test can kill a run mid-write.
PAUSE_ENV = "MOEPRUNE_TEST_WRITE_PAUSE"
# Files the writer produces itself (never copied from the source).
_GENERATED = {"config.json", INDEX_NAME, MANIFEST_NAME, MASK_NAME}


def write_pruned(source_dir, out_dir, kept: dict[int, list[int]], provenance: dict, overwrite: bool = False) -> Path:
    """Write the checkpoint at source_dir, keeping only `kept` experts, to out_dir; return out_dir.

    `kept` maps each MoE decoder-layer index to its kept expert indices (source
    numbering); `provenance` carries method/ratio/allocation/seed/mask_file/
    calibration (and optionally `ranked`: layer -> kept experts best first)
    for pruning.json.
    """
    source = Checkpoint.open(source_dir)
    out = Path(out_dir)
    if out.resolve() == source.path.resolve():
        raise UserError(f"output {out} is the source checkpoint itself; choose another directory", param="out_dir")
    kept = _normalise(kept)
    source.family.validate_kept(source.config, kept, moe_layers=source.expert_layers())
    plans = plan_shards(source, kept)
    mask = mask_rows(kept, provenance.get("ranked"))
    with staging_dir(out, overwrite) as tmp:
        source_hashes, written_hashes = {}, {}
        for plan in plans:
            source_hashes[plan.name], written_hashes[plan.name] = _write_shard(plan, tmp / plan.name)
            _test_pause()
        for shard in source.shards:  # shards with nothing kept are still hashed for provenance
            if shard.path.name not in source_hashes:
                source_hashes[shard.path.name] = sha256_file(shard.path)
        if source.sharded:
            _write_index(tmp, plans)
        new_count = len(next(iter(kept.values())))
        _write_json(tmp / "config.json", source.family.with_expert_count(source.config, new_count))
        _copy_other_files(source.path, tmp)
        _write_json(tmp / MASK_NAME, mask)
        after = Checkpoint.open(tmp)
        manifest = build_manifest(source, after, kept, provenance, source_hashes, written_hashes)
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        publish(tmp, out, overwrite)
    return out


def _normalise(kept: dict) -> dict[int, list[int]]:
    if not isinstance(kept, dict) or not kept:
        raise UserError("kept experts must be a non-empty mapping of MoE layer index -> expert indices")
    try:
        return {int(layer): sorted(int(i) for i in indices) for layer, indices in kept.items()}
    except (TypeError, ValueError) as exc:
        raise UserError(f"kept experts must be integers per layer ({exc})") from exc


def _write_shard(plan: ShardPlan, dest: Path) -> tuple[str, str]:
    """Stream plan.source into dest; return the sha256 of the source file and of dest."""
    header, offset = {}, 0
    if plan.source.metadata is not None:
        header["__metadata__"] = plan.source.metadata
    ranges = []
    for tensor in plan.tensors:
        header[tensor.name] = {"dtype": tensor.dtype, "shape": list(tensor.shape),
                               "data_offsets": [offset, offset + tensor.nbytes]}
        offset += tensor.nbytes
        ranges.extend(tensor.ranges)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    source_hash, out_hash = _Hasher(), _Hasher()
    buffers = [bytearray(CHUNK) for _ in range(_BUFFERS)]
    pending: list[list] = [[] for _ in range(_BUFFERS)]
    with source_hash, out_hash, open(plan.source.path, "rb", buffering=0) as src, open(dest, "wb", buffering=0) as dst:
        head = struct.pack("<Q", len(encoded)) + encoded
        _write_all(dst, head)
        out_hash.update(head)
        position, index, turn = 0, 0, 0
        while True:
            slot = turn % _BUFFERS
            for job in pending[slot]:  # the hashers are done with this buffer before it is refilled
                job.result()
            pending[slot] = []
            n = src.readinto(buffers[slot])
            if not n:
                break
            chunk = memoryview(buffers[slot])[:n]
            pending[slot].append(source_hash.update(chunk))
            chunk_end = position + n
            while index < len(ranges) and ranges[index][0] < chunk_end:
                start, end = ranges[index]
                lo, hi = max(start, position), min(end, chunk_end)
                if lo < hi:
                    piece = chunk[lo - position:hi - position]
                    _write_all(dst, piece)
                    pending[slot].append(out_hash.update(piece))
                if end > chunk_end:
                    break
                index += 1
            position, turn = chunk_end, turn + 1
        for jobs in pending:
            for job in jobs:
                job.result()
        if position != plan.source.size or index != len(ranges):
            raise UserError(f"{plan.source.path} changed while it was being read; run again")
        os.fsync(dst.fileno())
    return source_hash.hexdigest(), out_hash.hexdigest()


class _Hasher:
    """A sha256 fed on its own thread, in order (hashlib releases the GIL on large updates)."""

    def __init__(self):
        self._digest = hashlib.sha256()
        self._thread = ThreadPoolExecutor(max_workers=1)

    def update(self, data) -> Future:
        return self._thread.submit(self._digest.update, data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._thread.shutdown(wait=True)


def _write_all(handle, data) -> None:
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


def _write_index(tmp: Path, plans: list[ShardPlan]) -> None:
    weight_map = {tensor.name: plan.name for plan in plans for tensor in plan.tensors}
    total = sum(tensor.nbytes for plan in plans for tensor in plan.tensors)
    _write_json(tmp / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _copy_other_files(source: Path, tmp: Path) -> None:
    """Tokenizer, chat template, generation config and any other top-level non-weight file."""
    for path in sorted(source.iterdir()):
        name = path.name
        if path.is_dir():
            log.warning("not copying directory %s (it may hold unpruned weights)", path)
        elif name in _GENERATED or name.endswith(".safetensors") or name.startswith("."):
            continue
        elif name.endswith(OTHER_WEIGHT_SUFFIXES) or name.endswith((".bin.index.json", ".msgpack.index.json", ".h5.index.json")):
            log.warning("not copying %s: unpruned weights in another format", name)
        elif path.is_file():
            shutil.copyfile(path, tmp / name)


def _test_pause() -> None:
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        time.sleep(float(pause))
