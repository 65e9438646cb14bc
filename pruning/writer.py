"""The streaming writer: a pruned copy of a safetensors checkpoint, all or nothing.

Each source shard is read once, front to back, and hashed in that same read
while its kept byte ranges are written and hashed as they go out
(`pruning.shard_copy`); up to `workers` shards are copied at once. A source
shard whose sha256 is remembered from an earlier run (`pruning.hash_cache`,
same file unchanged) is not hashed again, and only its kept ranges are read.
Memory is a few chunk buffers per worker, whatever the model or tensor size.
Everything is written into a hidden temporary directory next to the target,
which is renamed into place only when complete, so an interrupted run never
leaves a half-written output.

With `dequantize=True` (gpt-oss MXFP4 experts) the shards holding MXFP4 pairs are written by
`pruning.dequantize_write` instead, one kept expert at a time, and config.json loses its
`quantization_config`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.checkpoint import INDEX_NAME, OTHER_WEIGHT_SUFFIXES, Checkpoint, opened
from moeprune.formats.expert_counts import with_layer_counts
from moeprune.formats.manifest import MANIFEST_NAME, MASK_NAME, build_manifest, mask_rows
from pruning import dequantize_write
from pruning.dequantize_write import DequantizedShardPlan
from pruning.hash_cache import SourceHashCache
from pruning.shard_copy import copy_shard, source_sha256
from pruning.shard_plan import ShardPlan, plan_shards
from pruning.staging import publish, staging_dir

log = logging.getLogger(__name__)
# Shards copied at once: each brings its own read, hash and write threads and 3 chunk buffers (48 MiB).
MAX_WORKERS = 4
# Test hook: seconds to pause after each output shard, so a test can kill a run mid-write.
PAUSE_ENV = "MOEPRUNE_TEST_WRITE_PAUSE"
# Files the writer produces itself (never copied from the source).
_GENERATED = {"config.json", INDEX_NAME, MANIFEST_NAME, MASK_NAME}


def write_pruned(
    source_dir,
    out_dir,
    kept: dict[int, list[int]],
    provenance: dict,
    overwrite: bool = False,
    *,
    hash_cache: SourceHashCache | None = None,
    workers: int | None = None,
    extra_files: dict | None = None,
    dequantize: bool = False,
) -> Path:
    """Write the checkpoint at source_dir, keeping only `kept` experts, to out_dir; return out_dir.

    `source_dir` is a directory or a `Checkpoint` already opened (and checked) by the caller: its parsed
    headers are then used as they are, not read again.

    `kept` maps each MoE decoder-layer index to its kept expert indices (source
    numbering); `provenance` carries method/ratio/allocation/seed/mask_file/
    calibration (and optionally `ranked`: layer -> kept experts best first)
    for pruning.json. `hash_cache` defaults to the user's cache directory
    (`SourceHashCache.from_env`); `workers` to min(4, CPU count). `extra_files`
    maps a file name to a function that writes that file (given its path): they
    are written into the staging directory before the manifest, so they are
    hashed in it and published with the rest, or not at all. `dequantize` writes MXFP4 experts as plain
    weights in config.json's dtype (`pruning.dequantize_write`; a UserError if nothing is MXFP4).
    """
    source = opened(source_dir)
    out = Path(out_dir)
    if out.resolve() == source.path.resolve():
        raise UserError(f"output {out} is the source checkpoint itself; choose another directory", param="out_dir")
    kept = _normalise(kept)
    if dequantize:
        dequantize_write.require_quantized(source.config)
        dequantize_write.target_dtype(source.config)
    source.family.validate_kept(source.config, kept, moe_layers=source.expert_layers())
    # Before any byte is written: a family without an uneven class refuses different counts here.
    config = with_layer_counts(source.family, source.config, {layer: len(experts) for layer, experts in kept.items()})
    plans: list = plan_shards(source, kept)
    if dequantize:
        plans = dequantize_write.dequantized_plans(source, plans, kept, source.config)
        config = dequantize_write.without_quantization(config)
        provenance = {**provenance, "dequantized": {"from": "mxfp4", "to": dequantize_write.target_dtype(config)}}
    mask = mask_rows(kept, provenance.get("ranked"))
    cache = hash_cache if hash_cache is not None else SourceHashCache.from_env()
    with staging_dir(out, overwrite) as tmp:
        workers = workers or min(MAX_WORKERS, os.cpu_count() or 1)
        source_hashes, written_hashes = _copy_shards(source, plans, tmp, cache, workers)
        if source.sharded:
            _write_index(tmp, plans)
        _write_json(tmp / "config.json", config)
        _copy_other_files(source.path, tmp)
        _write_json(tmp / MASK_NAME, mask)
        for name, write in (extra_files or {}).items():
            write(tmp / name)
        after = Checkpoint.open(tmp)
        manifest = build_manifest(source, after, kept, provenance, source_hashes, written_hashes)
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        publish(tmp, out, overwrite)
    return out


def _copy_shards(
    source: Checkpoint, plans: list[ShardPlan | DequantizedShardPlan], tmp: Path, cache: SourceHashCache, workers: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Copy every planned shard (and hash the shards nothing is kept from), `workers` files at a time."""
    planned = {plan.name for plan in plans}
    with ThreadPoolExecutor(workers, "shard") as pool:
        copies = {plan.name: pool.submit(_copy_one, plan, tmp / plan.name, cache) for plan in plans}
        # Shards with nothing kept are still hashed for provenance.
        hashes_only = {
            shard.path.name: pool.submit(source_sha256, shard.path, cache)
            for shard in source.shards
            if shard.path.name not in planned
        }
        try:
            done = {name: job.result() for name, job in copies.items()}
            source_hashes = {name: job.result() for name, job in hashes_only.items()}
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    source_hashes.update({name: pair[0] for name, pair in done.items()})
    return source_hashes, {name: pair[1] for name, pair in done.items()}


def _copy_one(plan: ShardPlan | DequantizedShardPlan, dest: Path, cache: SourceHashCache) -> tuple[str, str]:
    if isinstance(plan, DequantizedShardPlan):
        hashes = dequantize_write.write_dequantized_shard(plan, dest, cache)
    else:
        hashes = copy_shard(plan, dest, cache)
    _test_pause()
    return hashes


def _normalise(kept: dict) -> dict[int, list[int]]:
    if not isinstance(kept, dict) or not kept:
        raise UserError("kept experts must be a non-empty mapping of MoE layer index -> expert indices")
    try:
        return {int(layer): sorted(int(i) for i in indices) for layer, indices in kept.items()}
    except (TypeError, ValueError) as exc:
        raise UserError(f"kept experts must be integers per layer ({exc})") from exc


def _write_index(tmp: Path, plans: list[ShardPlan | DequantizedShardPlan]) -> None:
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
        elif name.endswith(OTHER_WEIGHT_SUFFIXES) or name.endswith(
            (".bin.index.json", ".msgpack.index.json", ".h5.index.json")
        ):
            log.warning("not copying %s: unpruned weights in another format", name)
        elif path.is_file():
            shutil.copyfile(path, tmp / name)


def _test_pause() -> None:
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        time.sleep(float(pause))
