"""Uneven vs uniform expert counts at serving time: real vLLM CPU engine RSS and KV capacity (issue 21).

Builds the synthetic Qwen3-MoE checkpoint of `bench/serving_capacity.py` (Qwen3-30B-A3B's
per-layer dimensions: hidden 2048, 128 experts of width 768, top-8; random bf16 weights) at
`--layers` decoder layers, prunes it twice with masks through `moeprune prune --mask`, to the
same total number of kept experts:

  uniform  64 experts in every layer
  uneven   --counts per layer (default 32,96,48,80: the same 256 in total, largest 96)

and serves each, one engine at a time, with the same KV cache, the uneven one through this
package's vLLM plugin. It reports weights on disk, idle engine RSS (API server + engine core,
3 s after /health) and vLLM's KV capacity. The question: does the uneven variant hold only its
own experts (RSS ~ the uniform one's), or does something allocate the largest count in every
layer (RSS higher by (largest x layers - total) experts)?

Needs ~10 GB of RAM at 4 layers and ~10 GB of disk; run it alone:
    flock /tmp/moeprune-bigmem.lock flock /tmp/moeprune-vllm.lock \\
        timeout 3600 .venv/bin/python bench/uneven_serving.py --layers 4 --work /tmp/uneven-serving
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from serving_capacity import DIMS, MiB, build_checkpoint, kv_capacity, tree_memory, weight_bytes  # noqa: E402

from testkit.vllm_plugin_env import plugin_pythonpath  # noqa: E402
from testkit.vllm_server import vllm_server  # noqa: E402


def prune_with_counts(source: Path, out: Path, counts: list[int], seed: int = 0) -> None:
    rng = random.Random(seed)
    mask = [sorted(rng.sample(range(DIMS["num_experts"]), count)) for count in counts]
    mask_file = out.parent / f"{out.name}-mask.json"
    mask_file.write_text(json.dumps(mask))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "moeprune.cli", "prune", str(source), "--out", str(out), "--mask", str(mask_file)],
        check=True,
        env=env,
    )


def engine_pid(port: int) -> int:
    """The API server listening on `port` (the root of the engine's process tree)."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return conn.pid
    raise RuntimeError(f"no process listens on port {port}")


def measure(model_dir: Path, label: str, kv_bytes: int, work: Path, max_model_len: int) -> dict:
    scratch = work / "scratch" / label
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    env = {"PYTHONPATH": plugin_pythonpath(scratch)}
    with vllm_server(
        model_dir,
        scratch,
        served_name=label,
        dtype="bfloat16",
        max_model_len=max_model_len,
        kv_cache_bytes=kv_bytes,
        env=env,
        timeout=1800,
    ) as url:
        start_s = time.monotonic() - started
        time.sleep(3)
        rss, pss = tree_memory(engine_pid(int(url.rsplit(":", 1)[1])))
    log = (scratch / "engine.log").read_text(errors="replace")
    result = {
        "label": label,
        "weights_bytes": weight_bytes(model_dir),
        "kv_bytes": kv_bytes,
        "start_s": round(start_s, 1),
        "idle_rss": rss,
        "idle_pss": pss,
        **kv_capacity(log),
    }
    print(f"[{label}] {json.dumps(result)}", flush=True)
    return result


def gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--counts", default="32,96,48,80", help="experts kept per layer in the uneven variant")
    parser.add_argument("--work", type=Path, default=Path("/tmp/uneven-serving"))
    parser.add_argument("--kv-mib", type=int, default=32)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    if len(counts) != args.layers:
        raise SystemExit(f"--counts gives {len(counts)} layers, --layers is {args.layers}")
    uniform_count = sum(counts) // len(counts)
    if uniform_count * len(counts) != sum(counts):
        raise SystemExit(f"--counts total {sum(counts)} is not a multiple of {len(counts)} layers")

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        source = build_checkpoint(work / "base", args.layers)
        prune_with_counts(source, work / "uniform", [uniform_count] * args.layers)
        prune_with_counts(source, work / "uneven", counts)
        kv = args.kv_mib * MiB
        results = {label: measure(work / label, label, kv, work, args.max_model_len) for label in ("uniform", "uneven")}
        expert = 3 * DIMS["moe_intermediate_size"] * DIMS["hidden_size"] * 2
        inflated = (max(counts) * args.layers - sum(counts)) * expert
        uniform, uneven = results["uniform"], results["uneven"]
        summary = "\n".join(
            [
                f"experts kept: uniform {uniform_count} x {args.layers}, uneven {'/'.join(map(str, counts))} "
                f"(same total {sum(counts)})",
                f"weights on disk: uniform {gib(uniform['weights_bytes'])}, uneven {gib(uneven['weights_bytes'])}",
                f"idle engine RSS (same {args.kv_mib} MiB KV): uniform {gib(uniform['idle_rss'])}, uneven "
                f"{gib(uneven['idle_rss'])}: difference {gib(uneven['idle_rss'] - uniform['idle_rss'])}; building "
                f"every layer at the largest count would add {gib(inflated)}",
                f"KV capacity: uniform {uniform.get('kv_tokens')} tokens, uneven {uneven.get('kv_tokens')} tokens",
            ]
        )
        print("\n" + summary)
        if args.out:
            args.out.write_text(
                json.dumps(
                    {
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "dims": DIMS,
                        "results": results,
                        "summary": summary,
                    },
                    indent=2,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
