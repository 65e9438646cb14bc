"""Expert allocation on the demo model: uniform vs global vs coverage at the same total of kept experts.

    .venv/bin/python bench/allocation_demo.py [--cache-dir DIR] [--methods frequency,gate,reap]
        [--ratios 0.5,0.75] [--allocations uniform,global,coverage] [--limit N] [--no-base]
        [--train-seeds 0,1,2] [--md bench/allocation_demo.md] [--json bench/allocation_demo.json]

Issue 21 ("Measured"). Uses the demo's own steps: the shipped demo model (`demo.build.build_model`, one
training seed), the demo's biomedical calibration file (`demo.calibration`), the pruning entry the demo
uses (`pruning.pipeline.run_prune`, one calibration pass per variant, as `demo.variants.prune_variants`
does) with `allocation` set, and `demo.evaluation.evaluate_all(..., tasks="all", parallel=1)`: one real
vLLM CPU engine per variant, one at a time. Uneven variants (global, coverage) are written as
`per_layer_config` with a renamed architecture and load through this package's vLLM plugin (its
`vllm.general_plugins` entry point). Everything lives under <cache>/runs/<model>/allocation/, apart from
the demo's own variants and cards.

`uniform` keeps the same count per layer; `global` ranks every expert's within-layer score share across
layers under one budget; `coverage` (the layer-adaptive rule) grows each layer until it covers as much of
its own score mass as the others. All three keep the same total (floor: top-k per layer).

Accuracy intervals are Wilson 95% intervals over the set's items (n = 150 per accuracy set, 120 made-up
entity questions for hallucination), computed here from the cards' rates and item counts. A paired exact
McNemar test (same items, uniform vs uneven) is given as well.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402
from demo.build import build_model, default_cache_dir  # noqa: E402
from demo.calibration import write_calibration  # noqa: E402
from demo.corpus import build_corpus  # noqa: E402
from demo.evaluation import evaluate_all  # noqa: E402
from demo.model_config import DemoModelConfig  # noqa: E402
from demo.summary import card_row  # noqa: E402
from demo.variants import Variant, variant_name  # noqa: E402
from evaluators.items_file import ITEMS_NAME, read_items  # noqa: E402
from moeprune.formats.report_card import ReportCard  # noqa: E402

Z = 1.959963984540054
SAMPLES = 128  # calibration documents per pass, as demo.variants.prune_variants
FAKE_TASKS = ("bio_fake", "general_fake")


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    if not n:
        return None
    p = successes / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b vs c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def task_count(card: ReportCard, task: str, metric: str) -> tuple[int, int] | None:
    result = card.tasks.get(task)
    entry = result.metrics.get(metric) if result is not None else None
    if entry is None or entry.value is None:
        return None
    n = result.n
    return round(entry.value * n), n


def measures(name: str, card_path: Path) -> dict:
    """card_row's numbers plus the item counts and Wilson intervals this table reports."""
    row = card_row(name, card_path)
    card = ReportCard.load(card_path)
    out = {
        "bio_acc": row["bio_acc"],
        "general_acc": row["general_acc"],
        "hallucination": row["hallucination"],
        "refusal": row["refusal"],
        "nota": row["nota"],
    }
    for key, task in (("bio_acc", "bio_qa"), ("general_acc", "general_qa")):
        counted = task_count(card, task, "exact_match")
        if counted:
            out[f"{key}_k"], out[f"{key}_n"] = counted
            out[f"{key}_ci95"] = wilson(*counted)
    fakes = [task_count(card, t, "hallucination_rate") for t in FAKE_TASKS]
    if all(fakes):
        k, n = sum(f[0] for f in fakes), sum(f[1] for f in fakes)
        out["hallucination_k"], out["hallucination_n"] = k, n
        out["hallucination_ci95"] = wilson(k, n)
        out["hallucination"] = k / n  # pooled; equal set sizes, so the same as card_row's mean
    return out


def item_correct(card_path: Path, task: str) -> dict[str, bool]:
    """Per item id of `task`: answered right (failed, skipped and unjudged items count as not right)."""
    run = Path(card_path).parent
    if not (run / ITEMS_NAME).exists():
        return {}
    return {record.id: bool(getattr(record, "correct", False)) for record in read_items(run) if record.task == task}


def paired(card_a: Path, card_b: Path, task: str) -> dict:
    a, b = item_correct(card_a, task), item_correct(card_b, task)
    ids = sorted(set(a) & set(b))
    only_a = sum(a[i] and not b[i] for i in ids)
    only_b = sum(b[i] and not a[i] for i in ids)
    return {"n": len(ids), "uniform_only": only_a, "uneven_only": only_b, "p": mcnemar_exact(only_a, only_b)}


def per_layer_counts(model_dir: Path) -> list[int]:
    manifest = json.loads((Path(model_dir) / "pruning.json").read_text())
    return [len(v) for _, v in sorted(manifest["kept_experts"].items(), key=lambda kv: int(kv[0]))]


def kept_experts(model_dir) -> dict:
    return json.loads((Path(model_dir) / "pruning.json").read_text())["kept_experts"]


def architecture(model_dir: Path) -> str:
    return ",".join(json.loads((Path(model_dir) / "config.json").read_text()).get("architectures") or [])


def prune_one(
    model_dir: Path, variants_dir: Path, calibration: Path, method: str, ratio: float, allocation: str
) -> tuple[Variant, float]:
    from pruning.pipeline import run_prune

    name = f"{variant_name(method, ratio)}-{allocation}"
    out = variants_dir / name
    started = time.monotonic()
    if not (out / "pruning.json").exists():
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        run_prune(
            model_dir,
            staging,
            method=method,
            ratio=ratio,
            allocation=allocation,
            seed=0,
            calibration=[calibration],
            samples=SAMPLES,
            progress=False,
            overwrite=True,
        )
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    return Variant(name, out, method, ratio), time.monotonic() - started


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def with_ci(row: dict, key: str) -> str:
    if row.get(key) is None:
        return "-"
    ci = row.get(f"{key}_ci95")
    return f"{pct(row[key])} ({pct(ci[0])}-{pct(ci[1])})" if ci else pct(row[key])


def overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def compare(uniform: dict, other: dict, key: str, higher_is_better: bool) -> str:
    a, b = uniform.get(f"{key}_ci95"), other.get(f"{key}_ci95")
    if not a or not b:
        return "not measured"
    delta = 100 * (other[key] - uniform[key])
    if overlap(a, b):
        return f"no measurable difference ({delta:+.1f} pts, intervals overlap)"
    better = (delta > 0) == higher_is_better
    return f"{'better' if better else 'worse'} ({delta:+.1f} pts, intervals disjoint)"


def verdict_lines(results: list[dict]) -> list[str]:
    lines = []
    by_key = {(r["method"], r["ratio"], r["allocation"]): r for r in results}
    for r in results:
        if r["allocation"] == "uniform":
            continue
        base = by_key.get((r["method"], r["ratio"], "uniform"))
        label = f"{r['method']} {round(100 * r['ratio'])}% {r['allocation']} vs uniform"
        if base is None or base.get("error") or r.get("error"):
            lines.append(f"- {label}: not comparable ({r.get('error') or (base or {}).get('error') or 'no uniform'})")
            continue
        parts = [
            f"bio {compare(base, r, 'bio_acc', True)}",
            f"general {compare(base, r, 'general_acc', True)}",
            f"hallucination {compare(base, r, 'hallucination', False)}",
        ]
        tests = r.get("paired_vs_uniform") or {}
        for task, label_task in (("bio_qa", "bio"), ("general_qa", "general")):
            t = tests.get(task)
            if t:
                parts.append(
                    f"paired {label_task}: uniform-only {t['uniform_only']} / uneven-only "
                    f"{t['uneven_only']} right, McNemar p={t['p']:.2g}"
                )
        lines.append(f"- {label}: " + "; ".join(parts))
    return lines


def table(results: list[dict], base: dict | None) -> str:
    lines = [
        "| method | ratio removed | allocation | kept per layer (total) | bio acc % (95% CI) "
        "| general acc % (95% CI) | hallucination on made-up % (95% CI) | served |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if base:
        lines.append(
            f"| base (unpruned) | 0 | - | 16/16/16 (48) | {with_ci(base, 'bio_acc')} "
            f"| {with_ci(base, 'general_acc')} | {with_ci(base, 'hallucination')} | yes |"
        )
    for r in results:
        counts = r.get("kept_per_layer")
        kept = f"{'/'.join(map(str, counts))} ({sum(counts)})" if counts else "-"
        served = "no: " + r["error"].splitlines()[0][:120] if r.get("error") else "yes"
        if r.get("same_experts_as"):
            served += f" (same experts as {r['same_experts_as']}: measurement reused)"
        lines.append(
            f"| {r['method']} | {r['ratio']} | {r['allocation']} | {kept} | {with_ci(r, 'bio_acc')} "
            f"| {with_ci(r, 'general_acc')} | {with_ci(r, 'hallucination')} | {served} |"
        )
    return "\n".join(lines)


def over_seeds(runs: list[dict]) -> list[str]:
    """Per uneven allocation, method and ratio: its difference from uniform in each training seed, and in how
    many seeds the Wilson intervals were disjoint in its favour or against it."""
    lines = []
    keys = [(r["method"], r["ratio"], r["allocation"]) for r in runs[0]["results"] if r["allocation"] != "uniform"]
    for method, ratio, allocation in keys:
        parts = []
        for key, label, higher in (
            ("bio_acc", "bio", True),
            ("general_acc", "general", True),
            ("hallucination", "hallucination", False),
        ):
            deltas, better, worse = [], 0, 0
            for run in runs:
                by_key = {(r["method"], r["ratio"], r["allocation"]): r for r in run["results"]}
                uneven, uniform = by_key.get((method, ratio, allocation)), by_key.get((method, ratio, "uniform"))
                if not uneven or not uniform or uneven.get(key) is None or uniform.get(key) is None:
                    deltas.append("-")
                    continue
                deltas.append(f"{100 * (uneven[key] - uniform[key]):+.1f}")
                a, b = uniform.get(f"{key}_ci95"), uneven.get(f"{key}_ci95")
                if a and b and not overlap(a, b):
                    if (uneven[key] > uniform[key]) == higher:
                        better += 1
                    else:
                        worse += 1
            parts.append(
                f"{label} {'/'.join(deltas)} pts (disjoint better in {better}, worse in {worse} of {len(runs)})"
            )
        lines.append(
            f"- {method} {round(100 * ratio)}% {allocation} vs uniform, per seed "
            f"{'/'.join(str(run['seed']) for run in runs)}: " + "; ".join(parts)
        )
    return lines


def write_outputs(args, runs: list[dict]) -> None:
    cpu = cpu_name()
    command = ".venv/bin/python " + " ".join(["bench/allocation_demo.py", *sys.argv[1:]])
    meta = {
        "date": str(datetime.date.today()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_end": round(os.getloadavg()[0], 2),
        "seeds": [run["seed"] for run in runs],
        "limit": args.limit,
        "command": command,
    }
    if args.json:
        # Paths are written as `<cache>/...`: what is committed names no machine's directories.
        cache_prefix = str(args.cache)
        text = (
            json.dumps(
                {
                    **meta,
                    "runs": [
                        {
                            "seed": run["seed"],
                            "model": run["record"]["key"],
                            "source": run["record"].get("source"),
                            "weights_sha256": run["record"]["weights_sha256"],
                            "evaluation_seconds": round(run["seconds"]),
                            "partial": run["partial"],
                            "base": run["base"],
                            "variants": run["results"],
                        }
                        for run in runs
                    ],
                },
                indent=2,
            )
            + "\n"
        )
        args.json.write_text(text.replace(json.dumps(cache_prefix)[1:-1], "<cache>"))
    if not args.md:
        return
    sections = [
        f"## {meta['date']}, {cpu}, {meta['cores']} cores, load average {meta['load_average_end']:.1f} "
        f"at the end\n\nRe-run: `{command}`\n"
    ]
    if len(runs) > 1:
        sections.append(
            "### Over training seeds (uneven minus uniform, points; a Wilson-interval comparison per "
            "seed)\n\n" + "\n".join(over_seeds(runs)) + "\n"
        )
    for run in runs:
        record, results = run["record"], run["results"]
        status = "PARTIAL (the run did not finish every variant)" if run["partial"] else "complete"
        sections.append(
            f"### Training seed {run['seed']} ({status})\n\n"
            f"Model {record['key']} ({record.get('source', 'trained')} weights), weights sha256 "
            f"`{record['weights_sha256'][:16]}`; {len(results)} variants pruned and evaluated in "
            f"{run['seconds']:.0f} s (vLLM CPU, float32, one engine at a time"
            f"{'' if args.limit is None else f', first {args.limit} items of each set'}).\n\n"
            + table(results, run["base"])
            + "\n\n#### Rule-based comparison (uneven vs uniform, same method and "
            "ratio)\n\n" + "\n".join(verdict_lines(results)) + "\n"
        )
    args.md.write_text(args.title + "\n".join(sections) + args.tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--methods", default="frequency,gate,reap")
    parser.add_argument("--ratios", default="0.5,0.75")
    parser.add_argument("--allocations", default="uniform,global,coverage")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--no-base", action="store_true", help="skip the unpruned base's card")
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--train-seeds",
        default="0",
        help="comma-separated training seeds of the demo model (0 = the shipped weights; any other "
        "seed is trained here first)",
    )
    args = parser.parse_args()
    args.title, args.tail = "# Expert allocation on the demo model (`bench/allocation_demo.py`)\n\n", ""
    if args.md and args.md.exists():
        # Keep hand-written text around the generated part: everything before the first "## " header line
        # and after the "<!-- end generated -->" marker.
        text = args.md.read_text()
        head, _, _ = text.partition("\n## ")
        args.title = head.rstrip() + "\n\n" if head.strip() else args.title
        marker = "<!-- end generated -->"
        args.tail = "\n" + marker + text.split(marker, 1)[1] if marker in text else ""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    allocations = [a.strip() for a in args.allocations.split(",") if a.strip()]

    cache = args.cache = args.cache_dir or default_cache_dir()
    runs: list[dict] = []
    for seed in [int(x) for x in args.train_seeds.split(",") if x.strip()]:
        run = {"seed": seed, "results": [], "base": None, "seconds": 0.0, "partial": True}
        runs.append(run)
        run_seed(args, run, cache, methods, ratios, allocations, lambda: write_outputs(args, runs))
        print(table(run["results"], run["base"]))
        print("\n".join(verdict_lines(run["results"])))
    if len(runs) > 1:
        print("\n".join(over_seeds(runs)))
    return 0


def run_seed(args, run: dict, cache: Path, methods, ratios, allocations, save) -> None:
    """Prune and evaluate every (method, ratio, allocation) on one training seed's model, filling `run` as it
    goes and calling `save` after each variant (an interrupted run keeps what it measured)."""
    cfg = DemoModelConfig(seed=run["seed"])
    model_dir, record = build_model(cfg, cache, use_shipped=True)
    work = cache / "runs" / model_dir.name / "allocation"
    calibration = write_calibration(build_corpus(cfg.corpus_seed), work / "calibration-biomedical.jsonl")
    cards_dir = work / ("cards" if args.limit is None else f"cards-limit{args.limit}")
    started = time.monotonic()
    base = None
    run["record"] = record
    results: list[dict] = run["results"]
    jobs = [(m, r, a) for m in methods for r in ratios for a in allocations]
    try:
        if not args.no_base:
            card = evaluate_all(
                [Variant("base", model_dir)], cards_dir, tasks="all", limit=args.limit, parallel=1, progress=False
            )["base"]
            base = run["base"] = measures("base", card)
            print(
                f"base: bio {pct(base['bio_acc'])} general {pct(base['general_acc'])} "
                f"halluc {pct(base['hallucination'])}",
                flush=True,
            )
        for method, ratio, allocation in jobs:
            row = {"method": method, "ratio": ratio, "allocation": allocation}
            results.append(row)
            try:
                variant, prune_s = prune_one(model_dir, work / "variants", calibration, method, ratio, allocation)
            except Exception as exc:  # noqa: BLE001  (a failed prune is a finding, recorded)
                row["error"] = f"prune failed: {type(exc).__name__}: {exc}"
                print(f"{method}-{ratio}-{allocation}: {row['error']}", flush=True)
                continue
            row.update(
                variant=variant.name,
                model_dir=str(variant.model_dir),
                prune_seconds=round(prune_s, 1),
                kept_per_layer=per_layer_counts(variant.model_dir),
                architecture=architecture(variant.model_dir),
            )
            twin = next(
                (
                    r
                    for r in results[:-1]
                    if r.get("card")
                    and r["method"] == method
                    and r["ratio"] == ratio
                    and kept_experts(r["model_dir"]) == kept_experts(variant.model_dir)
                ),
                None,
            )
            if twin is not None:
                # The same experts in every layer as a variant already measured: the same weights, so its
                # measurement is reused (marked) instead of spending another engine on it.
                row.update(
                    {
                        k: v
                        for k, v in twin.items()
                        if k.endswith(("_acc", "_k", "_n", "_ci95"))
                        or k in ("hallucination", "refusal", "nota", "card", "paired_vs_uniform")
                    }
                )
                row["same_experts_as"] = twin["variant"]
                print(f"{variant.name}: same experts as {twin['variant']}, measurement reused", flush=True)
                run["seconds"] = time.monotonic() - started
                save()
                continue
            t0 = time.monotonic()
            try:
                card = evaluate_all([variant], cards_dir, tasks="all", limit=args.limit, parallel=1, progress=False)[
                    variant.name
                ]
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001  (an uneven variant that fails to serve is a finding)
                row["error"] = f"serving failed: {type(exc).__name__}: {exc}"
                row["traceback"] = traceback.format_exc()[-4000:]
                print(f"{variant.name}: {row['error'][:400]}", flush=True)
                continue
            row["eval_seconds"] = round(time.monotonic() - t0, 1)
            row["card"] = str(card)
            row.update(measures(variant.name, card))
            print(
                f"{variant.name} {row['kept_per_layer']} {row['architecture']}: bio {pct(row['bio_acc'])} "
                f"general {pct(row['general_acc'])} halluc {pct(row['hallucination'])} "
                f"({row['eval_seconds']:.0f} s)",
                flush=True,
            )
            if allocation != "uniform":
                ref = next(
                    (
                        r
                        for r in results
                        if r.get("card")
                        and r["method"] == method
                        and r["ratio"] == ratio
                        and r["allocation"] == "uniform"
                    ),
                    None,
                )
                if ref:
                    row["paired_vs_uniform"] = {t: paired(Path(ref["card"]), card, t) for t in ("bio_qa", "general_qa")}
            run["seconds"] = time.monotonic() - started
            save()
        run["partial"] = False
    finally:
        run["seconds"] = time.monotonic() - started
        save()


if __name__ == "__main__":
    raise SystemExit(main())
