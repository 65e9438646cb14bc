"""Benchmark the streaming writer against a plain file copy of the same checkpoint on the same disk.

Builds a synthetic Qwen3-MoE checkpoint (real tensor names, bf16, several
shards, >= 2 GB by default) in a temporary directory, prunes 50% of the
experts of every layer by a mask through `write_pruned` with full provenance
(sha256 of every source shard and of every written file), and prints:

- throughput: source bytes per second of the prune vs. of a plain copy
  (`shutil.copyfile` of every source file), both measured in this run, best
  of `--rounds`; the copy is timed with and without fsync, because the
  writer fsyncs its shards before the final rename;
- the first run (empty source-hash cache: every source byte hashed) and the
  second run of the same prune (the cache from the first run: source hashes
  remembered, only the kept byte ranges read);
- peak RSS of the process that ran the prune (a child process, VmHWM),
  against the largest tensor of the checkpoint.

    nice -n 10 .venv/bin/python bench/prune_write.py [--gb 2.2] [--dir /path/on/the/disk] [--rounds 2] [--workers N]

Needs only the project's own packages (no torch): the source is written as raw safetensors.

The temporary directory is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, EXPERT_WIDTH, VOCAB, EXPERTS, HEADS, KV_HEADS, HEAD_DIM = 2048, 768, 32000, 64, 32, 4, 128
CHILD = """
import json, sys, time
from pruning.hash_cache import SourceHashCache
from pruning.writer import write_pruned
kept = {int(k): v for k, v in json.loads(sys.argv[3]).items()}
workers = int(sys.argv[5]) or None
wall, cpu = time.perf_counter(), time.process_time()
write_pruned(sys.argv[1], sys.argv[2], kept, {"method": "mask", "ratio": 0.5}, overwrite=True,
             hash_cache=SourceHashCache(sys.argv[4]), workers=workers)
print("TIMES", time.perf_counter() - wall, time.process_time() - cpu)
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""
# safetensors dtype name and bytes per element of the synthetic weights.
DTYPE, ITEM = "BF16", 2


def layer_tensors(layer: int) -> dict[str, tuple[int, ...]]:
    p = f"model.layers.{layer}."
    shapes = {
        p + "input_layernorm.weight": (HIDDEN,),
        p + "post_attention_layernorm.weight": (HIDDEN,),
        p + "self_attn.q_proj.weight": (HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.o_proj.weight": (HIDDEN, HEADS * HEAD_DIM),
        p + "self_attn.q_norm.weight": (HEAD_DIM,),
        p + "self_attn.k_norm.weight": (HEAD_DIM,),
        p + "mlp.gate.weight": (EXPERTS, HIDDEN),
    }
    for e in range(EXPERTS):
        shapes[p + f"mlp.experts.{e}.gate_proj.weight"] = (EXPERT_WIDTH, HIDDEN)
        shapes[p + f"mlp.experts.{e}.up_proj.weight"] = (EXPERT_WIDTH, HIDDEN)
        shapes[p + f"mlp.experts.{e}.down_proj.weight"] = (HIDDEN, EXPERT_WIDTH)
    return shapes


def save_raw(path: Path, shapes: dict[str, tuple[int, ...]], fill: int) -> None:
    """A safetensors file with every tensor's bytes set to `fill`, written in slabs (no torch, bounded memory)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        nbytes = math.prod(shape) * ITEM
        header[name] = {"dtype": DTYPE, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    slab = bytes([fill]) * (64 << 20)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for left in range(offset, 0, -len(slab)):
            handle.write(slab[: min(left, len(slab))])


def build_source(root: Path, target_gb: float) -> tuple[Path, int, int]:
    """Write the synthetic checkpoint, one shard per decoder layer; returns (dir, layers, largest tensor bytes)."""
    per_layer = sum(ITEM * math.prod(s) for s in layer_tensors(0).values())
    layers = max(2, round((target_gb * 1e9 - 4 * VOCAB * HIDDEN) / per_layer))
    src = root / "source"
    src.mkdir()
    weight_map = {}
    shards = [(f"model-{i + 1:05d}-of-{layers + 1:05d}.safetensors", layer_tensors(i)) for i in range(layers)]
    shards.append(
        (
            f"model-{layers + 1:05d}-of-{layers + 1:05d}.safetensors",
            {
                "model.embed_tokens.weight": (VOCAB, HIDDEN),
                "lm_head.weight": (VOCAB, HIDDEN),
                "model.norm.weight": (HIDDEN,),
            },
        )
    )
    for index, (name, shapes) in enumerate(shards):
        save_raw(src / name, shapes, fill=index % 7 + 1)
        weight_map.update({key: name for key in shapes})
    total = sum((src / name).stat().st_size for name, _ in shards)
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    (src / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen3_moe",
                "architectures": ["Qwen3MoeForCausalLM"],
                "hidden_size": HIDDEN,
                "num_hidden_layers": layers,
                "num_attention_heads": HEADS,
                "num_key_value_heads": KV_HEADS,
                "head_dim": HEAD_DIM,
                "moe_intermediate_size": EXPERT_WIDTH,
                "num_experts": EXPERTS,
                "num_experts_per_tok": 8,
                "vocab_size": VOCAB,
                "decoder_sparse_step": 1,
                "mlp_only_layers": [],
                "torch_dtype": "bfloat16",
            }
        )
    )
    return src, layers, VOCAB * HIDDEN * ITEM


def plain_copy(src: Path, dst: Path, fsync: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds incl. the kernel's) of copying every source file."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    start, cpu = time.perf_counter(), time.process_time()
    for path in sorted(src.iterdir()):
        shutil.copyfile(path, dst / path.name)
        if fsync:
            with open(dst / path.name, "rb") as handle:
                os.fsync(handle.fileno())
    return time.perf_counter() - start, time.process_time() - cpu


def _child(code: str, *args: str) -> tuple[float, int, str]:
    """Run python code in a fresh process; its seconds and peak RSS (VmHWM, which exec resets,
    unlike rusage's maxrss, which would count this parent's pages from before the exec)."""
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    kib = int(done.stdout.strip().splitlines()[-1].split()[1])
    return seconds, kib * 1024, done.stdout


def prune_in_child(src: Path, out: Path, kept: dict, cache: Path, workers: int) -> tuple[float, float, int]:
    """(wall, CPU seconds of write_pruned itself: interpreter start-up and imports excluded, peak RSS)."""
    _, peak, stdout = _child(CHILD, str(src), str(out), json.dumps(kept), str(cache), str(workers))
    wall, cpu = next(line.split()[1:] for line in stdout.splitlines() if line.startswith("TIMES"))
    return float(wall), float(cpu), peak


def baseline_rss() -> int:
    """Peak RSS of a process that only imports the writer (the interpreter's own share)."""
    code = "import pruning.writer\nprint(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    return _child(code)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.2, help="source size in GB (default 2.2)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the temporary directory")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="shards copied at once (default: the writer's)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="moeprune-bench-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        src, layers, largest = build_source(root, args.gb)
        source_bytes = sum(p.stat().st_size for p in src.iterdir())
        print(
            f"built {source_bytes / 1e9:.2f} GB, {layers + 1} shards, {layers} MoE layers x {EXPERTS} experts, "
            f"largest tensor {largest / 2**20:.0f} MiB, in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        kept = {layer: list(range(0, EXPERTS, 2)) for layer in range(layers)}
        copies, synced, firsts, seconds, rss = [], [], [], [], 0
        for round_ in range(args.rounds):
            copies.append(plain_copy(src, root / "copy", fsync=False))
            synced.append(plain_copy(src, root / "copy", fsync=True))
            cache = root / f"hash-cache-{round_}"  # empty: the first prune hashes every source byte
            *times, peak = prune_in_child(src, root / "pruned", kept, cache, args.workers)
            firsts.append(tuple(times))
            rss = max(rss, peak)
            *times, peak = prune_in_child(src, root / "pruned", kept, cache, args.workers)  # same source again
            seconds.append(tuple(times))
            rss = max(rss, peak)
            print(
                f"round {round_ + 1} (wall s / CPU s): copy {copies[-1][0]:.2f}/{copies[-1][1]:.2f}, copy+fsync "
                f"{synced[-1][0]:.2f}/{synced[-1][1]:.2f}, prune {firsts[-1][0]:.2f}/{firsts[-1][1]:.2f}, again "
                f"with the hash cache {seconds[-1][0]:.2f}/{seconds[-1][1]:.2f}",
                flush=True,
            )
        out_bytes = sum(p.stat().st_size for p in (root / "pruned").iterdir())
        (copy, copy_cpu), (sync_copy, _), (first, first_cpu), (second, second_cpu) = (
            min(copies),
            min(synced),
            min(firsts),
            min(seconds),
        )
        budget = 2 * largest + 300 * 2**20
        result = {
            "source_gb": round(source_bytes / 1e9, 3),
            "output_gb": round(out_bytes / 1e9, 3),
            "cpus": os.cpu_count(),
            "workers": args.workers or None,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "copy_s": round(copy, 2),
            "copy_fsync_s": round(sync_copy, 2),
            "prune_s": round(first, 2),
            "prune_cached_s": round(second, 2),
            "copy_cpu_s": round(copy_cpu, 2),
            "prune_cpu_s": round(first_cpu, 2),
            "prune_cached_cpu_s": round(second_cpu, 2),
            "copy_MBps": round(source_bytes / copy / 1e6),
            "copy_fsync_MBps": round(source_bytes / sync_copy / 1e6),
            "prune_source_MBps": round(source_bytes / first / 1e6),
            "prune_cached_source_MBps": round(source_bytes / second / 1e6),
            "ratio_vs_copy": round(copy / first, 2),
            "ratio_vs_copy_fsync": round(sync_copy / first, 2),
            "cached_ratio_vs_copy": round(copy / second, 2),
            "cached_ratio_vs_copy_fsync": round(sync_copy / second, 2),
            "peak_rss_MiB": round(rss / 2**20),
            "interpreter_rss_MiB": round(baseline_rss() / 2**20),
            "largest_tensor_MiB": round(largest / 2**20),
            "rss_budget_MiB": round(budget / 2**20),
        }
        print(
            f"plain copy:      {copy:6.2f}s ({result['copy_MBps']} MB/s); with fsync {sync_copy:.2f}s "
            f"({result['copy_fsync_MBps']} MB/s)"
        )
        print(
            f"prune 50%:       {first:6.2f}s ({result['prune_source_MBps']} MB/s of source, writes "
            f"{out_bytes / 1e9:.2f} GB, sha256 of every source and output byte, fsyncs)"
        )
        print(
            f"  again, cached: {second:6.2f}s ({result['prune_cached_source_MBps']} MB/s of source: source hashes "
            "from the cache, only kept ranges read, output hashed)"
        )
        print(
            f"throughput ratio {result['ratio_vs_copy']} vs copy, {result['ratio_vs_copy_fsync']} vs copy+fsync; "
            f"second run {result['cached_ratio_vs_copy']} / {result['cached_ratio_vs_copy_fsync']} (goal >= 0.8)"
        )
        print(
            f"CPU seconds      copy {copy_cpu:.2f}, prune {first_cpu:.2f}, cached {second_cpu:.2f} "
            "(the cost whatever the load: "
            "on an idle machine, wall time >= CPU s / free cores)"
        )
        print(
            f"peak RSS         {result['peak_rss_MiB']} MiB (interpreter alone {result['interpreter_rss_MiB']} MiB); "
            f"budget 2 x {result['largest_tensor_MiB']} MiB + 300 MiB = {result['rss_budget_MiB']} MiB"
        )
        print(json.dumps(result))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
