"""Benchmark the streaming writer against a plain file copy of the same checkpoint on the same disk.

Builds a synthetic Qwen3-MoE checkpoint (real tensor names, bf16, several
shards, >= 2 GB by default) in a temporary directory, prunes 50% of the
experts of every layer by a mask through `write_pruned`, and prints:

- throughput: source bytes per second of the prune vs. of a plain copy
  (`shutil.copyfile` of every source file), both measured in this run, best
  of `--rounds`; the copy is timed with and without fsync, because the
  writer fsyncs its shards before the final rename;
- peak RSS of the process that ran the prune (a child process, from
  `wait4`'s rusage), against the largest tensor of the checkpoint.

    nice -n 10 .venv/bin/python bench/prune_write.py [--gb 2.2] [--dir /path/on/the/disk] [--rounds 2]

The temporary directory is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, EXPERT_WIDTH, VOCAB, EXPERTS, HEADS, KV_HEADS, HEAD_DIM = 2048, 768, 32000, 64, 32, 4, 128
CHILD = """
import json, sys
from pruning.writer import write_pruned
kept = {int(k): v for k, v in json.loads(sys.argv[3]).items()}
write_pruned(sys.argv[1], sys.argv[2], kept, {"method": "mask", "ratio": 0.5}, overwrite=True)
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


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


def build_source(root: Path, target_gb: float) -> tuple[Path, int, int]:
    """Write the synthetic checkpoint, one shard per decoder layer; returns (dir, layers, largest tensor bytes)."""
    import torch
    from safetensors.torch import save_file

    per_layer = sum(2 * torch.Size(s).numel() for s in layer_tensors(0).values())
    layers = max(2, round((target_gb * 1e9 - 4 * VOCAB * HIDDEN) / per_layer))
    src = root / "source"
    src.mkdir()
    weight_map = {}
    shards = [(f"model-{i + 1:05d}-of-{layers + 1:05d}.safetensors", layer_tensors(i)) for i in range(layers)]
    shards.append((f"model-{layers + 1:05d}-of-{layers + 1:05d}.safetensors", {
        "model.embed_tokens.weight": (VOCAB, HIDDEN), "lm_head.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}))
    for index, (name, shapes) in enumerate(shards):
        tensors = {key: torch.full(shape, float(index % 7) + 0.5, dtype=torch.bfloat16) for key, shape in shapes.items()}
        save_file(tensors, str(src / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in shapes})
        del tensors
    total = sum((src / name).stat().st_size for name, _ in shards)
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (src / "config.json").write_text(json.dumps({
        "model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "hidden_size": HIDDEN,
        "num_hidden_layers": layers, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM, "moe_intermediate_size": EXPERT_WIDTH, "num_experts": EXPERTS,
        "num_experts_per_tok": 8, "vocab_size": VOCAB, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "torch_dtype": "bfloat16"}))
    return src, layers, VOCAB * HIDDEN * 2


def plain_copy(src: Path, dst: Path, fsync: bool) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    start = time.perf_counter()
    for path in sorted(src.iterdir()):
        shutil.copyfile(path, dst / path.name)
        if fsync:
            with open(dst / path.name, "rb") as handle:
                os.fsync(handle.fileno())
    return time.perf_counter() - start


def _child(code: str, *args: str) -> tuple[float, int]:
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
    return seconds, kib * 1024


def prune_in_child(src: Path, out: Path, kept: dict) -> tuple[float, int]:
    return _child(CHILD, str(src), str(out), json.dumps(kept))


def baseline_rss() -> int:
    """Peak RSS of a process that only imports the writer (the interpreter's own share)."""
    code = "import pruning.writer\nprint(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    return _child(code)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.2, help="source size in GB (default 2.2)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the temporary directory")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="moeprune-bench-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        src, layers, largest = build_source(root, args.gb)
        source_bytes = sum(p.stat().st_size for p in src.iterdir())
        print(f"built {source_bytes / 1e9:.2f} GB, {layers + 1} shards, {layers} MoE layers x {EXPERTS} experts, "
              f"largest tensor {largest / 2**20:.0f} MiB, in {time.perf_counter() - t0:.0f}s", flush=True)
        kept = {layer: list(range(0, EXPERTS, 2)) for layer in range(layers)}
        copies, synced, prunes, rss = [], [], [], 0
        for _ in range(args.rounds):
            copies.append(plain_copy(src, root / "copy", fsync=False))
            synced.append(plain_copy(src, root / "copy", fsync=True))
            seconds, peak = prune_in_child(src, root / "pruned", kept)
            prunes.append(seconds)
            rss = max(rss, peak)
        out_bytes = sum(p.stat().st_size for p in (root / "pruned").iterdir())
        copy, sync_copy, prune = min(copies), min(synced), min(prunes)
        budget = 2 * largest + 300 * 2**20
        result = {
            "source_gb": round(source_bytes / 1e9, 3), "output_gb": round(out_bytes / 1e9, 3),
            "copy_s": round(copy, 2), "copy_fsync_s": round(sync_copy, 2), "prune_s": round(prune, 2),
            "copy_MBps": round(source_bytes / copy / 1e6), "copy_fsync_MBps": round(source_bytes / sync_copy / 1e6),
            "prune_source_MBps": round(source_bytes / prune / 1e6),
            "throughput_ratio_vs_copy": round(copy / prune, 2),
            "throughput_ratio_vs_copy_fsync": round(sync_copy / prune, 2),
            "peak_rss_MiB": round(rss / 2**20), "interpreter_rss_MiB": round(baseline_rss() / 2**20),
            "largest_tensor_MiB": round(largest / 2**20), "rss_budget_MiB": round(budget / 2**20),
        }
        print(f"plain copy:      {copy:6.2f}s ({result['copy_MBps']} MB/s); with fsync {sync_copy:.2f}s "
              f"({result['copy_fsync_MBps']} MB/s)")
        print(f"prune 50%:       {prune:6.2f}s ({result['prune_source_MBps']} MB/s of source, "
              f"writes {out_bytes / 1e9:.2f} GB, hashes source and output, fsyncs)")
        print(f"throughput ratio {result['throughput_ratio_vs_copy']} vs copy, "
              f"{result['throughput_ratio_vs_copy_fsync']} vs copy+fsync (goal >= 0.8)")
        print(f"peak RSS         {result['peak_rss_MiB']} MiB (interpreter alone {result['interpreter_rss_MiB']} MiB); "
              f"budget 2 x {result['largest_tensor_MiB']} MiB + 300 MiB = {result['rss_budget_MiB']} MiB")
        print(json.dumps(result))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
