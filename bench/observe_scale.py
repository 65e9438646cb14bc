"""Benchmark the layer-streamed observation pass at Qwen3-30B-A3B's real per-layer size.

Writes synthetic Qwen3-MoE checkpoints with Qwen3-30B-A3B's per-layer dimensions (hidden 2048,
128 experts of width 768, top-8, 32/4 attention heads of 128, vocab 151,936, bf16: ~1.25 GB per
decoder layer) at each depth in `--layers`, and for each one measures, every pass in a fresh child
process (testkit/observe_child.py):

- the layer-streamed pass (`observe stream`): peak RSS, wall time, compute time;
- at the depths in `--whole-at` only (the whole-model pass holds ~2x the weights in RSS while
  transformers fuses the experts, so it is kept to depths that fit this machine): one
  whole-model load, then a plain forward (no hooks) and the whole-model observe pass over the
  same tokens: peak RSS and tokens/s of each.

It prints the goal checks (streamed peak RSS <= one decoder layer + hidden-state buffer + 1 GiB,
flat in depth; streamed tokens/s >= 0.9 of the whole-model pass), the extrapolation to the full
48-layer Qwen3-30B-A3B on this CPU, and the formula's figure for a DeepSeek-V3-shaped 671 B model,
then one JSON line with everything. Each checkpoint is deleted once measured.

    flock /tmp/moeprune-bigmem.lock nice -n 10 .venv/bin/python bench/observe_scale.py \\
        [--layers 4 8] [--whole-at 4] [--tokens 2048] [--seq-len 512] [--ean-max-tokens 64] \\
        [--threads 1] [--dir /tmp/p-stream/observe_scale] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.synthetic_moe import MoeShape, write_checkpoint  # noqa: E402

GIB = 2**30
QWEN3_30B_LAYERS = 48
# --smoke: a small shape (~50 MB per layer) that checks this script end to end in a minute, no lock needed.
SMOKE = dict(hidden=512, experts=32, expert_width=512, top_k=4, heads=4, kv_heads=2, head_dim=128, vocab=1024)


def deepseek_v3_layer_bytes(item: int = 2) -> dict:
    """Per-layer bytes of DeepSeek-V3 (671 B) from its config, at `item` bytes per weight (bf16: 2)."""
    hidden, experts, width, dense_width, vocab = 7168, 256, 2048, 18432, 129280
    heads, q_rank, kv_rank, nope, rope, v_dim = 128, 1536, 512, 128, 64, 128
    attention = (
        hidden * q_rank
        + q_rank * heads * (nope + rope)
        + hidden * (kv_rank + rope)
        + kv_rank * heads * (nope + v_dim)
        + heads * v_dim * hidden
    )
    moe = experts * 3 * hidden * width + 3 * hidden * width + experts * hidden  # routed + 1 shared + router
    return {
        "moe_layer": (attention + moe) * item,
        "dense_layer": (attention + 3 * hidden * dense_width) * item,
        "embedding": vocab * hidden * item,
        "hidden": hidden,
        "layers": 61,
        "dense_layers": 3,
    }


def child(mode: str, source: Path, args, extra=()) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    command = [
        sys.executable,
        "-m",
        "testkit.observe_child",
        mode,
        str(source),
        str(args.tokens),
        "--seq-len",
        str(args.seq_len),
        "--ean-max-tokens",
        str(args.ean_max_tokens),
        *extra,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def available_bytes() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--whole-at", type=int, nargs="*", default=[4])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--ean-max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dir", default="/tmp/p-stream/observe_scale")
    parser.add_argument("--smoke", action="store_true", help="a ~50 MB-per-layer shape, to check the script")
    args = parser.parse_args()
    args.shape = SMOKE if args.smoke else {}

    work = Path(args.dir)
    results = {"args": {key: value for key, value in vars(args).items() if key != "shape"}, "runs": {}}
    try:
        for depth in args.layers:
            shape = MoeShape(layers=depth, **args.shape)
            started = time.perf_counter()
            source = write_checkpoint(work / f"layers-{depth}", shape)
            print(
                f"wrote {depth} layers ({depth * shape.layer_bytes() / GIB:.2f} GiB) in "
                f"{time.perf_counter() - started:.0f}s",
                flush=True,
            )
            run = {"stream": child("stream", source, args)}
            print(f"  stream: {run['stream']}", flush=True)
            if depth in args.whole_at:
                need = 2.2 * depth * shape.layer_bytes() + 2 * GIB
                if available_bytes() < need:
                    print(f"  whole: skipped, {available_bytes() / GIB:.1f} GiB available < {need / GIB:.1f} GiB")
                else:
                    run["whole"] = child("whole", source, args, ["--forward-first"])
                    print(f"  whole: {run['whole']}", flush=True)
            results["runs"][depth] = run
            shutil.rmtree(source)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summarise(results, args)
    print(json.dumps(results))


def summarise(results: dict, args) -> None:
    shape = MoeShape(layers=1, **args.shape)
    layer, embedding = shape.layer_bytes(), shape.embedding_bytes()
    padded = args.tokens  # samples of seq_len tokens: no padding unless the last one is short
    hidden_buffer = padded * shape.hidden * shape.item
    goal = layer + hidden_buffer + GIB
    runs = results["runs"]
    depths = sorted(runs)
    summary = {
        "layer_bytes": layer,
        "embedding_bytes": embedding,
        "hidden_buffer_bytes": hidden_buffer,
        "goal_bytes": goal,
    }
    print(
        f"\none decoder layer {layer / GIB:.3f} GiB, embeddings {embedding / GIB:.3f} GiB, hidden-state buffer "
        f"{hidden_buffer / 2**20:.1f} MiB ({args.tokens} tokens); memory goal {goal / GIB:.2f} GiB"
    )
    for depth in depths:
        stream = runs[depth]["stream"]
        stream["layer_seconds"] = stream["read_seconds"] + stream["compute_seconds"]
        print(
            f"{depth} layers: streamed peak RSS {stream['peak_rss'] / GIB:.2f} GiB "
            f"({'meets' if stream['peak_rss'] <= goal else 'MISSES'} the goal); {stream['seconds']:.0f}s in all: "
            f"{stream['read_seconds']:.0f}s reading layers, {stream['compute_seconds']:.0f}s computing, the rest "
            "imports, skeleton and input capture"
        )
        whole = runs[depth].get("whole")
        if whole:
            forward_rate = args.tokens / whole["forward_seconds"]
            whole_rate = args.tokens / whole["compute_seconds"]
            stream_rate = args.tokens / stream["layer_seconds"]
            stream_compute_rate = args.tokens / stream["compute_seconds"]
            summary[f"ratios_{depth}"] = {
                "stream_vs_whole_observe": stream_rate / whole_rate,
                "stream_compute_vs_whole_observe": stream_compute_rate / whole_rate,
                "stream_vs_plain_forward": stream_rate / forward_rate,
            }
            print(
                f"  whole model: peak RSS {whole['peak_rss'] / GIB:.2f} GiB; plain forward {forward_rate:.1f} tok/s, "
                f"observe {whole_rate:.1f} tok/s "
                f"(load {whole['seconds'] - whole['compute_seconds'] - whole['forward_seconds']:.0f}s "
                f"not counted); streamed {stream_rate:.1f} tok/s end to end (reads included) = "
                f"{stream_rate / whole_rate:.2f}x the whole-model observe pass, "
                f"{stream_rate / forward_rate:.2f}x a plain forward"
            )
    if len(depths) >= 2:
        low, high = depths[0], depths[-1]
        grow = runs[high]["stream"]["peak_rss"] - runs[low]["stream"]["peak_rss"]
        # Per layer: reading + computing, averaged over the deepest run; fixed: imports, skeleton, capture.
        per_layer = runs[high]["stream"]["layer_seconds"] / high
        fixed = runs[high]["stream"]["seconds"] - runs[high]["stream"]["layer_seconds"]
        summary.update(rss_growth_bytes=grow, seconds_per_layer=per_layer, fixed_seconds=fixed)
        print(
            f"streamed peak RSS {low} -> {high} layers: {grow / 2**20:+.0f} MiB (one layer is "
            f"{layer / 2**20:.0f} MiB); time per layer {per_layer:.1f}s for {args.tokens} tokens"
        )
        full_time = fixed + per_layer * QWEN3_30B_LAYERS
        full_rss = max(runs[d]["stream"]["peak_rss"] for d in depths)
        summary.update(qwen3_30b_seconds=full_time, qwen3_30b_peak_rss=full_rss)
        print(
            f"Qwen3-30B-A3B (48 layers), {args.tokens} tokens: about {full_time / 60:.0f} min, peak RSS "
            f"{full_rss / GIB:.1f} GiB; for the default calibration (128 x 2048 tokens) time scales with "
            f"tokens and the hidden-state buffer becomes {128 * 2048 * shape.hidden * 2 / GIB:.2f} GiB"
        )
    deepseek = deepseek_v3_layer_bytes()
    calibration_buffer = 128 * 2048 * deepseek["hidden"] * 2
    need = deepseek["moe_layer"] + calibration_buffer + GIB
    summary["deepseek_v3"] = {**deepseek, "hidden_buffer_bytes": calibration_buffer, "need_bytes": need}
    print(
        f"DeepSeek-V3 (671 B, bf16) by the formula: one MoE layer {deepseek['moe_layer'] / GIB:.1f} GiB + "
        f"hidden states of 128 x 2048 tokens {calibration_buffer / GIB:.2f} GiB + 1 GiB = {need / GIB:.1f} GiB "
        f"(embeddings {deepseek['embedding'] / GIB:.2f} GiB only during the capture)"
    )
    results["summary"] = summary


if __name__ == "__main__":
    main()
