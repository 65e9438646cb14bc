"""Guards measured on the demo: mixed biomedical/general traffic through a real gateway and real vLLM CPU engines.

    flock /tmp/moeprune-vllm.lock flock /tmp/moeprune-bigmem.lock \
        .venv/bin/python bench/guard_results.py [--base DEMO_MODEL_DIR] [--limit N]

Steps: prune the demo base by `frequency` at 0.5 and 0.75 on the demo's biomedical calibration file (the
domain gate is fitted at prune time, against the shipped general reference); choose the gate threshold for
0.95 in-domain recall on the none-of-the-above sets (never on the sets measured below); serve base, both
pruned variants and their guarded forms (`url:` variants on the same engines) behind `moeprune serve`; send
the shipped QA and made-up-entity sets of both domains to every configuration; read who answered from
`x-moe-variant`. Also: the gate's AUROC and per-decision cost, and the drift gauge's value on pure
biomedical vs pure general traffic (routing from transformers on the same prompts through the gateway's
own telemetry code, since vLLM CPU cannot return routed experts). Writes bench/guard_results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.prompts import parse_answer, render_mc_prompt  # noqa: E402
from evaluators.tasks import shipped_tasks  # noqa: E402

CACHE = Path(os.environ.get("MOEPRUNE_CACHE_DIR", Path.home() / ".cache" / "moe-prune-serve"))
SETS = ("bio_qa", "general_qa", "bio_fake", "general_fake")
RATIOS = (0.5, 0.75)
CASCADE_FLAGS = ["low_confidence", "uncertain_span"]
ENGINE = {"kv_cache_bytes": 128 * 1024 * 1024, "max_model_len": 256, "dtype": "float32"}


def newest_demo_model() -> Path:
    done = [
        d for d in (CACHE / "models").glob("demo-*") if (d / "model.safetensors").exists() and "building" not in d.name
    ]
    if not done:
        raise SystemExit("no demo model in the cache: run `moeprune demo` first, or pass --base")
    return max(done, key=lambda d: d.stat().st_mtime)


def prune_variants(base: Path, calibration: Path, out: Path) -> dict[float, Path]:
    from pruning.pipeline import run_prune

    made = {}
    for ratio in RATIOS:
        target = out / f"frequency-{round(ratio * 100)}"
        if not (target / "domain_gate.json").exists():
            run_prune(
                base,
                target,
                method="frequency",
                ratio=ratio,
                calibration=[calibration],
                samples=128,
                dtype="float32",
                progress=False,
                overwrite=True,
            )
        made[ratio] = target
    return made


def gate_threshold(gate_dir: Path) -> dict:
    from evaluators.gate_quality import gate_quality
    from moeprune.formats.domain_gate import DomainGate

    tasks = shipped_tasks()
    gate = DomainGate.load(gate_dir)
    tuned = gate_quality(gate, [(tasks[n], tasks[n].load()) for n in ("bio_nota", "general_nota")], 0.95)
    measured = gate_quality(gate, [(tasks[n], tasks[n].load()) for n in SETS], 0.95)
    return {"tuned_on_nota": tuned, "on_measured_sets": measured}


def gate_cost(gate_dir: Path, prompts: list[str]) -> dict:
    from moeprune.formats.domain_gate import DomainGate, _word_buckets

    gate = DomainGate.load(gate_dir)
    figures = {}
    for state in ("cold", "warm"):
        wall, cpu = [], []  # CPU time too: on a shared machine, wall-clock p99 is mostly time spent preempted
        for prompt in prompts:
            if state == "cold":
                _word_buckets.cache_clear()
            started, started_cpu = time.perf_counter(), time.thread_time()
            gate.score(prompt)
            wall.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
        for name, timings in (("", wall), ("cpu_", cpu)):
            timings.sort()
            figures.setdefault(state, {}).update(
                {
                    f"{name}p50_ms": timings[len(timings) // 2] * 1e3,
                    f"{name}p99_ms": timings[int(len(timings) * 0.99)] * 1e3,
                }
            )
    return figures


def drift_values(base: Path, pruned: Path, prompts_by_domain: dict[str, list[str]]) -> dict[str, float]:
    """The gateway's own pipeline (vLLM encoding -> decode -> counts -> window) on transformers routing."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm.utils.serial_utils import numpy2base64

    from app.telemetry.counts import RoutingCounts
    from app.telemetry.drift import PrunedHitWindow
    from app.telemetry.npy import decode_routed_experts
    from app.telemetry.service import removed_experts
    from moeprune.formats.manifest import PruningManifest

    torch.set_num_threads(1)  # a 3-layer model: threads only contend with the other work on the machine
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    top_k = model.config.num_experts_per_tok
    removed = removed_experts(PruningManifest.load(pruned))
    values = {}
    for domain, prompts in prompts_by_domain.items():
        counts, window = RoutingCounts(sorted(removed)), PrunedHitWindow(removed, window_s=1e9)
        for prompt in prompts:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
            with torch.no_grad():
                logits = model(ids, output_router_logits=True).router_logits
            routed = torch.stack([layer.topk(top_k, dim=-1).indices for layer in logits], dim=1)
            window.add(counts.add(decode_routed_experts(numpy2base64(routed.numpy().astype(np.uint8)))))
        values[domain] = window.ratio()
    return values


def write_config(work: Path, base: Path, pruned: dict[float, Path], threshold: float) -> tuple[Path, dict]:
    from testkit.vllm_server import free_port

    ports = {"base": free_port(), **{f"p{round(r * 100)}": free_port() for r in pruned}}
    keys = {f"BENCH_{name.upper()}_KEY": secrets.token_urlsafe(16) for name in ports}
    variants = {
        "base": {"model": str(base), "api_key_env": "BENCH_BASE_KEY", "engine": {**ENGINE, "port": ports["base"]}}
    }
    for index, (ratio, path) in enumerate(pruned.items()):
        name = f"p{round(ratio * 100)}"
        key = f"BENCH_{name.upper()}_KEY"
        variants[name] = {
            "model": str(path),
            "base": "base",
            "api_key_env": key,
            "engine": {**ENGINE, "port": ports[name], "env": {"VLLM_CPU_OMP_THREADS_BIND": str(1 - index % 2)}},
        }
        remote = {
            "url": f"http://127.0.0.1:{ports[name]}",
            "api_key_env": key,
            "served_model_name": name,
            "base": "base",
        }
        gate = {"fallback": "base", "threshold": threshold, "file": str(path / "domain_gate.json")}
        cascade = {"flags": CASCADE_FLAGS, "fallback": "base"}
        variants[f"{name}+gate"] = {**remote, "guard": {"domain_gate": gate}}
        variants[f"{name}+cascade"] = {**remote, "guard": {"cascade": cascade}}
        variants[f"{name}+both"] = {**remote, "guard": {"domain_gate": gate, "cascade": cascade}}
    path = work / "variants.yaml"
    path.write_text(yaml.safe_dump({"variants": variants}))
    return path, keys


def ask(client: httpx.Client, url: str, model: str, item) -> dict:
    body = {
        "model": model,
        "temperature": 0,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": render_mc_prompt(item.question, item.options)}],
    }
    started = time.perf_counter()
    response = client.post(url + "/v1/chat/completions", json=body)
    latency = time.perf_counter() - started
    response.raise_for_status()
    answer = response.json()["choices"][0]["message"]["content"] or ""
    parsed = parse_answer(answer, item.options)
    return {
        "correct": parsed.choice == item.answer,
        "abstained": parsed.abstained(item.options),
        "served_by": response.headers["x-moe-variant"],
        "latency": latency,
    }


def measure(url: str, configs: list[str], items: dict[str, list]) -> dict:
    results = {}
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(4) as pool:
        for config in configs:
            for set_name, set_items in items.items():
                results[(config, set_name)] = list(
                    pool.map(lambda item, config=config: ask(client, url, config, item), set_items)
                )
            print(f"measured {config}", flush=True)
    return results


def summarise(results: dict, configs: list[str]) -> list[dict]:
    rows = []
    for config in configs:
        get = lambda s, config=config: results[(config, s)]  # noqa: E731
        answered_by_pruned = [r["served_by"] != "base" for r in get("bio_qa") + get("bio_fake")]
        latencies = [r["latency"] for s in SETS for r in get(s)]
        rows.append(
            {
                "config": config,
                "bio_accuracy": statistics.mean(r["correct"] for r in get("bio_qa")),
                "general_accuracy": statistics.mean(r["correct"] for r in get("general_qa")),
                "bio_hallucination": statistics.mean(not r["abstained"] for r in get("bio_fake")),
                "general_hallucination": statistics.mean(not r["abstained"] for r in get("general_fake")),
                "bio_by_pruned": statistics.mean(answered_by_pruned),
                "general_by_pruned": statistics.mean(
                    r["served_by"] != "base" for r in get("general_qa") + get("general_fake")
                ),
                "p50_ms": statistics.median(latencies) * 1e3,
            }
        )
    return rows


def report(rows, gate, cost, drift, base: Path, started: float, limit: int | None = None) -> str:
    base_row = rows[0]
    alone = {row["config"]: row["p50_ms"] for row in rows if "+" not in row["config"]}
    lines = [
        "# Guards on the demo (bench/guard_results.py)",
        "",
        f"Base: `{base.name}` (demo model from the cache); variants: `frequency` at 0.5 and 0.75 on the demo's",
        "biomedical calibration file; domain gate fitted at prune time against the shipped general reference;",
        f"gate threshold {gate['tuned_on_nota']['threshold']:.4f} chosen for 0.95 in-domain recall on the",
        "none-of-the-above sets (not the sets below). Cascade flags: "
        + ", ".join(CASCADE_FLAGS)
        + " (default thresholds). Real vLLM CPU engines behind `moeprune serve`; greedy, max_tokens 8.",
        f"Items: {'the first ' + str(limit) if limit else 'all'} of each of {', '.join(SETS)} (the gate's AUROC: all).",
        f"Run took {time.time() - started:.0f} s on a shared 2-core machine.",
        "",
        "| configuration | bio acc | general acc (vs base) | bio halluc. | general halluc. | bio answered by pruned "
        "| general answered by pruned | p50 ms | added p50 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["general_accuracy"] / base_row["general_accuracy"] if base_row["general_accuracy"] else float("nan")
        own = row["config"].split("+")[0]
        added = row["p50_ms"] - alone.get(own, row["p50_ms"]) if "+" in row["config"] else 0.0
        lines.append(
            f"| {row['config']} | {row['bio_accuracy']:.3f} | {row['general_accuracy']:.3f} ({ratio:.2f}) "
            f"| {row['bio_hallucination']:.3f} | {row['general_hallucination']:.3f} "
            f"| {row['bio_by_pruned']:.2f} | {row['general_by_pruned']:.2f} | {row['p50_ms']:.0f} "
            f"| {added:+.0f} |"
        )
    measured = gate["on_measured_sets"]
    lines += [
        "",
        "Goal (issue 14): with both guards, general accuracy >= 0.95 of the base's while >= 80% of biomedical",
        "requests are still answered by the pruned variant.",
        "",
        "Reading the table: accuracy is exact match of the parsed option on the QA sets; hallucination is the",
        "share of made-up-entity questions answered with a real option instead of the abstain option. p50 is",
        'the median whole-request latency with 4 requests in flight; "added" compares it with the same',
        "pruned variant unguarded. Three engines share 2 cores with other work, so differences of tens of ms",
        "are noise, and traffic the gate moves to the base engine can come back sooner than from the pruned",
        "one (negative added latency). The gate's own cost is below.",
        "",
        "## Domain gate",
        "",
        f"- AUROC in-domain vs cross-domain on the measured sets (QA + made-up entities, both domains): "
        f"{measured['auroc']:.4f} ({measured['n_in_domain']} + {measured['n_cross_domain']} prompts); on the NOTA "
        f"sets used for the threshold: {gate['tuned_on_nota']['auroc']:.4f}.",
        f"- At the threshold: in-domain recall {measured['recall']:.3f}, cross-domain sent to the fallback "
        f"{measured['cross_domain_fallback_rate']:.3f}.",
        f"- Decision cost on one CPU core (pure Python, the rendered MC prompts, {len(SETS)} sets x 3 passes): "
        f"warm p50 {cost['warm']['p50_ms']:.3f} ms, p99 {cost['warm']['p99_ms']:.3f} ms wall-clock "
        f"(CPU time p50 {cost['warm']['cpu_p50_ms']:.3f}, p99 {cost['warm']['cpu_p99_ms']:.3f} ms); cold word cache "
        f"p50 {cost['cold']['p50_ms']:.3f} ms, p99 {cost['cold']['p99_ms']:.3f} ms (CPU p99 "
        f"{cost['cold']['cpu_p99_ms']:.3f} ms). Wall-clock p99 on this shared 2-core machine includes preemption.",
        "",
        "## Drift gauge (`moeprune_pruned_expert_hit_ratio`)",
        "",
        "Share of the base's routed (token, expert) pairs on experts the variant removed, over the QA prompts",
        "(chat template applied), through the gateway's decode/count/window code:",
        "",
        "| variant | pure biomedical | pure general |",
        "|---|---|---|",
    ]
    for name, values in drift.items():
        lines.append(f"| {name} | {values['biomedical']:.3f} | {values['general']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="demo model dir (default: the newest in the cache)")
    parser.add_argument("--limit", type=int, help="items per set (default: all)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "g-guard" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "guard_results.md")
    args = parser.parse_args()
    started = time.time()
    base = args.base or newest_demo_model()
    runs = CACHE / "runs" / base.name
    calibration = runs / "calibration-biomedical.jsonl"
    if not calibration.exists():
        from demo.calibration import write_calibration
        from demo.corpus import build_corpus

        calibration = write_calibration(build_corpus(0), args.work / "calibration-biomedical.jsonl")
    (args.work / "tmp").mkdir(parents=True, exist_ok=True)
    pruned = prune_variants(base, calibration, args.work / "variants")
    gate = gate_threshold(pruned[0.75])
    tasks = shipped_tasks()
    items = {name: tasks[name].load()[: args.limit] for name in SETS}
    prompts = [render_mc_prompt(i.question, i.options) for s in SETS for i in items[s]]
    cost = gate_cost(pruned[0.75], prompts * 3)
    drift = {
        f"p{round(r * 100)}": drift_values(
            base,
            path,
            {
                "biomedical": [render_mc_prompt(i.question, i.options) for i in items["bio_qa"]],
                "general": [render_mc_prompt(i.question, i.options) for i in items["general_qa"]],
            },
        )
        for r, path in pruned.items()
    }
    config, keys = write_config(args.work, base, pruned, gate["tuned_on_nota"]["threshold"])
    from testkit.vllm_server import free_port

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MOEPRUNE_")},
        **keys,
        "MOEPRUNE_WORK_DIR": str(args.work / "engines"),
        "TORCHDYNAMO_DISABLE": "1",
        "TMPDIR": str(args.work / "tmp"),
    }
    log = (args.work / "gateway.log").open("w")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "moeprune.cli", "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 900
        while time.time() < deadline:
            if gateway.poll() is not None:
                raise SystemExit(f"gateway exited; see {args.work / 'gateway.log'}")
            try:
                if httpx.get(url + "/ready", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        configs = ["base"] + [
            f"p{round(r * 100)}{suffix}" for r in RATIOS for suffix in ("", "+gate", "+cascade", "+both")
        ]
        rows = summarise(measure(url, configs, items), configs)
    finally:
        gateway.terminate()
        gateway.wait(120)
    args.out.write_text(report(rows, gate, cost, drift, base, started, args.limit))
    (args.work / "guard_results.json").write_text(
        json.dumps({"rows": rows, "gate": gate, "cost": cost, "drift": drift}, indent=1)
    )
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
