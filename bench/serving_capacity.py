"""What pruning buys at serving time: memory and concurrency of real vLLM CPU engines, base vs pruned.

Builds a synthetic Qwen3-MoE checkpoint with Qwen3-30B-A3B's real per-layer
dimensions (hidden 2048, 128 experts of width 768, top-8, 32 query / 4 KV
heads of 128; random bf16 weights) at `--layers` decoder layers and the
project's small test tokenizer (a few hundred tokens of vocabulary, so the
embeddings do not hide the experts), prunes it 50% with a mask through
`moeprune prune --mask`, then serves, one engine at a time:

  base     the source,  KV cache = --base-kv-mib
  pruned   the pruned,  KV cache = --base-kv-mib       (same KV: RSS drop vs bytes saved)
  pruned+  the pruned,  KV cache = --base-kv-mib + the weight bytes pruning saved
           (the same memory budget, weights + KV, as `base`)

and measures for each: engine RSS (API server + engine core, idle after start
and peak under load), the KV-cache capacity vLLM reports (tokens, and its
"maximum concurrency" line), and, for `base` and `pruned+`, a saturation load:
--requests completions at once (random prompt ids, --prompt-tokens long,
--max-tokens generated with ignore_eos), sampling /metrics for the most
sequences running at once, preemptions, and generated tokens/s.

KV sizes are given to vLLM in bytes (--kv-cache-memory-bytes), which is what
VLLM_CPU_KVCACHE_SPACE sets in whole GiB, so both budgets match exactly.

Needs ~12 GB of RAM at 4 layers and ~8 GB of disk: run it alone,
    flock /tmp/moeprune-bigmem.lock flock /tmp/moeprune-vllm.lock \\
        timeout 3600 .venv/bin/python bench/serving_capacity.py --layers 4 --work /tmp/p-mxfp4/serving
The work directory (checkpoints) is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engines.command import EngineSpec, launch_command, launch_environment  # noqa: E402
from app.engines.process import free_port  # noqa: E402
from testkit.vllm_server import stop_process_group  # noqa: E402

# Qwen3-30B-A3B's per-layer shapes.
DIMS = dict(
    hidden_size=2048,
    moe_intermediate_size=768,
    num_experts=128,
    num_experts_per_tok=8,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=128,
    intermediate_size=6144,
)
MiB = 1024 * 1024


# ---------------------------------------------------------------- the checkpoint
def tensor_shapes(layers: int, vocab: int) -> dict[int | None, list[tuple[str, tuple[int, ...]]]]:
    """Shard key (layer, or None for embeddings/head) -> [(name, shape)] in transformers' on-disk names."""
    h, i, e = DIMS["hidden_size"], DIMS["moe_intermediate_size"], DIMS["num_experts"]
    q, kv = DIMS["num_attention_heads"] * DIMS["head_dim"], DIMS["num_key_value_heads"] * DIMS["head_dim"]
    shards: dict[int | None, list] = {
        None: [("model.embed_tokens.weight", (vocab, h)), ("model.norm.weight", (h,)), ("lm_head.weight", (vocab, h))]
    }
    for layer in range(layers):
        p = f"model.layers.{layer}."
        items = [
            (p + "input_layernorm.weight", (h,)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (q, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, q)),
            (p + "self_attn.q_norm.weight", (DIMS["head_dim"],)),
            (p + "self_attn.k_norm.weight", (DIMS["head_dim"],)),
            (p + "mlp.gate.weight", (e, h)),
        ]
        for expert in range(e):
            x = f"{p}mlp.experts.{expert}."
            items += [
                (x + "gate_proj.weight", (i, h)),
                (x + "up_proj.weight", (i, h)),
                (x + "down_proj.weight", (h, i)),
            ]
        shards[layer] = items
    return shards


def write_safetensors(path: Path, items, pool: bytes, rng: random.Random) -> int:
    """A bf16 safetensors file of `items`, norms = 1, everything else bytes drawn from a random-normal pool."""
    header, offset = {}, 0
    for name, shape in items:
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    encoded = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
    encoded += b" " * (-len(encoded) % 8)
    one = struct.pack("<H", 0x3F80)  # bf16 1.0
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)) + encoded)
        for name, _ in items:
            n = header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
            if name.endswith("norm.weight"):
                out.write(one * (n // 2))
                continue
            while n:  # random windows of the pool: cheap, and no two tensors alike
                start = rng.randrange(0, len(pool) // 2) * 2
                piece = min(n, len(pool) - start)
                out.write(pool[start : start + piece])
                n -= piece
    return offset


def build_checkpoint(out: Path, layers: int, seed: int = 0) -> Path:
    import torch
    from transformers import AutoConfig, GenerationConfig

    from demo.tokenizer import train_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out)
    config = AutoConfig.for_model(
        "qwen3_moe",
        **DIMS,
        num_hidden_layers=layers,
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    config.dtype = torch.bfloat16
    config.architectures = ["Qwen3MoeForCausalLM"]  # without it vLLM serves the checkpoint as an embedding model
    config.save_pretrained(str(out))
    GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id).save_pretrained(str(out))
    torch.manual_seed(seed)
    pool = (torch.randn(32 * MiB) * 0.02).to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    rng = random.Random(seed)
    shards = tensor_shapes(layers, len(tokenizer))
    names = {key: f"model-{n + 1:05d}-of-{len(shards):05d}.safetensors" for n, key in enumerate(shards)}
    weight_map, total = {}, 0
    for key, items in shards.items():
        total += write_safetensors(out / names[key], items, pool, rng)
        weight_map.update({name: names[key] for name, _ in items})
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2)
    )
    return out


def weight_bytes(model_dir: Path) -> int:
    return sum(path.stat().st_size for path in model_dir.glob("*.safetensors"))


def prune_by_mask(source: Path, out: Path, layers: int, keep: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    mask = [sorted(rng.sample(range(DIMS["num_experts"]), keep)) for _ in range(layers)]
    mask_file = out.parent / "expert_mask.json"
    mask_file.write_text(json.dumps(mask))
    subprocess.run(
        [sys.executable, "-m", "moeprune.cli", "prune", str(source), "--out", str(out), "--mask", str(mask_file)],
        check=True,
    )


# ---------------------------------------------------------------- an engine
def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over the process and its descendants."""
    rss = pss = 0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
    return rss, pss


class MemorySampler:
    """Peak RSS/PSS of a process tree, sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every, self.peak_rss, self.peak_pss = pid, every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            rss, pss = tree_memory(self.pid)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def engine(model_dir: Path, kv_bytes: int, scratch: Path, args, name: str):
    spec = EngineSpec(
        model=str(model_dir),
        port=free_port(),
        served_name=name,
        dtype="bfloat16",
        max_model_len=args.max_model_len,
        kv_cache_bytes=kv_bytes,
        args=["--max-num-seqs", str(args.max_num_seqs)],
    )
    scratch.mkdir(parents=True, exist_ok=True)
    log_path = scratch / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            launch_command(spec),
            env=launch_environment(spec, scratch / name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{spec.port}"
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name}: vLLM exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() - started > args.start_timeout:
                raise SystemExit(f"{name}: not healthy after {args.start_timeout}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url, proc.pid, log_path, time.monotonic() - started
    finally:
        stop_process_group(proc, grace=60)


def kv_capacity(log_text: str) -> dict:
    """What vLLM printed about its KV cache: tokens, and concurrency at max_model_len."""
    found = {}
    tokens = re.findall(r"KV cache size: ([\d,]+) tokens", log_text)
    if tokens:
        found["kv_tokens"] = int(tokens[-1].replace(",", ""))
    concurrency = re.findall(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x", log_text)
    if concurrency:
        found["max_concurrency_at_max_len"] = float(concurrency[-1][1])
    return found


def metric(text: str, name: str) -> float:
    total = None
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total or 0.0


async def saturate(url: str, name: str, args, vocab: int) -> dict:
    """--requests completions at once; the most running at once, preemptions, tokens/s."""
    rng = random.Random(1)
    peak = {"running": 0.0, "waiting": 0.0, "kv_usage": 0.0}
    done = asyncio.Event()

    async with httpx.AsyncClient(timeout=args.request_timeout) as client:

        async def watch():
            while not done.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    text = (await client.get(url + "/metrics")).text
                    peak["running"] = max(peak["running"], metric(text, "vllm:num_requests_running"))
                    peak["waiting"] = max(peak["waiting"], metric(text, "vllm:num_requests_waiting"))
                    peak["kv_usage"] = max(peak["kv_usage"], metric(text, "vllm:kv_cache_usage_perc"))
                await asyncio.sleep(0.25)

        async def one():
            prompt = [rng.randrange(3, vocab) for _ in range(args.prompt_tokens)]
            response = await client.post(
                url + "/v1/completions",
                json={
                    "model": name,
                    "prompt": prompt,
                    "max_tokens": args.max_tokens,
                    "ignore_eos": True,
                    "temperature": 0,
                },
            )
            if response.status_code != 200:
                raise SystemExit(f"{name}: HTTP {response.status_code}: {response.text[:500]}")
            return response.json()["usage"]["completion_tokens"]

        before = (await client.get(url + "/metrics")).text
        watcher = asyncio.create_task(watch())
        start = time.monotonic()
        generated = await asyncio.gather(*(one() for _ in range(args.requests)))
        wall = time.monotonic() - start
        done.set()
        await watcher
        after = (await client.get(url + "/metrics")).text
    return {
        "requests": args.requests,
        "wall_s": round(wall, 1),
        "generated_tokens": sum(generated),
        "generated_tokens_per_s": round(sum(generated) / wall, 1),
        "total_tokens_per_s": round((sum(generated) + args.requests * args.prompt_tokens) / wall, 1),
        "max_running": int(peak["running"]),
        "max_waiting": int(peak["waiting"]),
        "max_kv_usage": round(peak["kv_usage"], 3),
        "preemptions": int(metric(after, "vllm:num_preemptions_total") - metric(before, "vllm:num_preemptions_total")),
    }


def measure(model_dir: Path, kv_bytes: int, label: str, args, work: Path, vocab: int, load: bool) -> dict:
    print(f"[{label}] starting vLLM on {model_dir.name} with a {kv_bytes / MiB:.0f} MiB KV cache", flush=True)
    with engine(model_dir, kv_bytes, work / "scratch", args, label) as (url, pid, log_path, start_s):
        time.sleep(3)
        idle_rss, idle_pss = tree_memory(pid)
        result = {
            "label": label,
            "weights_bytes": weight_bytes(model_dir),
            "kv_bytes": kv_bytes,
            "start_s": round(start_s, 1),
            "idle_rss": idle_rss,
            "idle_pss": idle_pss,
            **kv_capacity(log_path.read_text(errors="replace")),
        }
        if load:
            with MemorySampler(pid) as sampler:
                result["load"] = asyncio.run(saturate(url, label, args, vocab))
            result["peak_rss"], result["peak_pss"] = sampler.peak_rss, sampler.peak_pss
    print(f"[{label}] {json.dumps(result)}", flush=True)
    return result


def gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB"


def report(results: dict, saved: int) -> str:
    base, same_kv, budget = results["base"], results["pruned"], results["pruned+"]
    drop = base["idle_rss"] - same_kv["idle_rss"]
    lines = [
        f"weights: base {gib(base['weights_bytes'])}, pruned {gib(same_kv['weights_bytes'])}, saved {gib(saved)}",
        f"idle engine RSS (same {base['kv_bytes'] / MiB:.0f} MiB KV): base {gib(base['idle_rss'])}, pruned "
        f"{gib(same_kv['idle_rss'])}: drop {gib(drop)} = {drop / saved:.2f} of the bytes saved (goal >= 0.8)",
        f"same budget (weights + KV = {gib(base['weights_bytes'] + base['kv_bytes'])}): KV base "
        f"{base['kv_bytes'] / MiB:.0f} MiB / {base.get('kv_tokens')} tokens, pruned {budget['kv_bytes'] / MiB:.0f} MiB "
        f"/ {budget.get('kv_tokens')} tokens; idle RSS base {gib(base['idle_rss'])}, pruned {gib(budget['idle_rss'])}",
    ]
    if base.get("max_concurrency_at_max_len") and budget.get("max_concurrency_at_max_len"):
        lines.append(
            f"vLLM's maximum concurrency at max_model_len: base {base['max_concurrency_at_max_len']}x, "
            f"pruned {budget['max_concurrency_at_max_len']}x"
        )
    for result in (base, budget):
        load = result["load"]
        lines.append(
            f"{result['label']}: {load['requests']} requests at once -> max {load['max_running']} running "
            f"(max {load['max_waiting']} waiting, {load['preemptions']} preemptions, peak KV use "
            f"{load['max_kv_usage']:.0%}), {load['generated_tokens_per_s']} generated tok/s, "
            f"{load['total_tokens_per_s']} tok/s incl. prompts, {load['wall_s']} s; peak RSS "
            f"{gib(result['peak_rss'])}"
        )
    ratio = budget["load"]["max_running"] / max(1, base["load"]["max_running"])
    lines.append(f"concurrent sequences in the same budget: {ratio:.2f}x the base's (goal >= 1.5)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/p-mxfp4/serving"))
    parser.add_argument("--base-kv-mib", type=int, default=32, help="the base engine's KV cache (default 32 MiB)")
    parser.add_argument("--requests", type=int, default=48, help="completions sent at once (default 48)")
    parser.add_argument("--prompt-tokens", type=int, default=192)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--start-timeout", type=float, default=900)
    parser.add_argument("--request-timeout", type=float, default=1800)
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints in --work")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        t0 = time.monotonic()
        source = build_checkpoint(work / "base", args.layers)
        pruned = work / "pruned"
        prune_by_mask(source, pruned, args.layers, DIMS["num_experts"] // 2)
        print(f"built and pruned in {time.monotonic() - t0:.0f} s", flush=True)
        vocab = json.loads((source / "config.json").read_text())["vocab_size"]
        base_bytes, pruned_bytes = weight_bytes(source), weight_bytes(pruned)
        saved = base_bytes - pruned_bytes
        kv = args.base_kv_mib * MiB
        results = {
            "base": measure(source, kv, "base", args, work, vocab, load=True),
            "pruned": measure(pruned, kv, "pruned", args, work, vocab, load=False),
            "pruned+": measure(pruned, kv + saved, "pruned+", args, work, vocab, load=True),
        }
        text = report(results, saved)
        print("\n" + text)
        if args.out:
            args.out.write_text(
                json.dumps(
                    {
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "dims": DIMS,
                        "saved_bytes": saved,
                        "results": results,
                        "summary": text,
                    },
                    indent=2,
                )
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
