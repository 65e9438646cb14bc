"""Run the demo experiment over several training seeds and write bench/demo_results.md (the committed numbers).

    nice .venv/bin/python bench/demo_results.py --train-seeds 3 [--random-seeds 3] [--evaluator in-process|vllm]

For each training seed:
1. trains (or reuses) the demo model exactly as `moeprune demo` does (pinned
   numerics, so the same seed gives the same weights on any machine: the
   weights' sha256 is printed beside the cache key);
2. measures routing specialisation (total variation between the biomedical
   and general routing distributions, per layer), trained vs untrained;
3. prunes with every method at 0.25/0.5/0.75 on biomedical calibration data
   (random with several pruning seeds);
4. evaluates base and every variant on all six shipped sets: in-process by
   default (transformers greedy answers under routing masks, which give the
   pruned checkpoint's logits by the pruning invariant, scored by the
   evaluators' own answer parser), or through real vLLM servers as the demo
   does (`--evaluator vllm`: ~35 s per variant on this machine, plus flag AUROCs).
Then it checks the study's four findings per seed and over seeds: a finding is
reproduced only when it holds for every training seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo_findings import findings_over_seeds_text, findings_text, flag_table, summary_over_seeds  # noqa: E402
from demo.build import build_model, default_cache_dir  # noqa: E402
from demo.calibration import write_calibration, write_gate_reference  # noqa: E402
from demo.corpus import build_corpus  # noqa: E402
from demo.model_config import DemoModelConfig  # noqa: E402
from demo.summary import card_row, markdown_table, with_recovery  # noqa: E402
from demo.variants import ALL_METHODS, ALL_RATIOS, Variant, prune_variants  # noqa: E402
from moeprune.formats.manifest import PruningManifest  # noqa: E402


def evaluate_in_process(model_dir, corpus, variants: list[Variant]) -> list[dict]:
    from bench.demo_probe import load, masked_row, set_items

    model, tokenizer = load(model_dir)
    items = set_items(corpus)
    rows = [masked_row(model, tokenizer, items, None, "base", None, None)]
    for v in variants:
        manifest = PruningManifest.load(v.model_dir)
        row = masked_row(model, tokenizer, items, manifest.kept_experts, v.name, v.method, v.ratio)
        row["bytes_saved"] = manifest.bytes_saved
        rows.append(row)
    return with_recovery(rows)


def evaluate_vllm(model_dir, run_dir, variants, parallel) -> list[dict]:
    from demo.evaluation import evaluate_all

    cards = evaluate_all([Variant("base", model_dir), *variants], run_dir / "cards", parallel=parallel)
    return with_recovery([card_row(name, path) for name, path in cards.items()])


def one_seed(args, seed: int, cache: Path) -> dict:
    from bench.demo_probe import routing_specialisation

    cfg = DemoModelConfig(seed=seed)
    started = time.monotonic()
    model_dir, record = build_model(cfg, cache)
    print(
        f"seed {seed}: model {model_dir.name} weights {record['weights_sha256'][:16]} "
        f"({'reused' if record['cached'] else 'trained'} in {time.monotonic() - started:.0f} s)",
        flush=True,
    )
    corpus = build_corpus(cfg.corpus_seed)
    run_dir = cache / "runs" / model_dir.name
    calibration = write_calibration(corpus, run_dir / "calibration-biomedical.jsonl")
    reference = write_gate_reference(corpus, run_dir / "gate-reference-general.jsonl")
    specialisation = routing_specialisation(model_dir, cfg, corpus)
    methods = [m for m in args.methods.split(",") if m]
    pruned = prune_variants(
        model_dir,
        run_dir / "variants",
        calibration,
        methods,
        ALL_RATIOS,
        seeds=tuple(range(args.random_seeds)),
        progress=False,
        gate_reference=reference,
    )
    t0 = time.monotonic()
    # rows are cached per model and sweep, so adding a training seed does not re-evaluate the others
    cached = run_dir / f"bench-rows-{args.evaluator}-{args.methods.replace(',', '+')}-r{args.random_seeds}.json"
    if cached.exists():
        rows = json.loads(cached.read_text())
    elif args.evaluator == "vllm":
        rows = evaluate_vllm(model_dir, run_dir, pruned, args.parallel)
    else:
        rows = evaluate_in_process(model_dir, corpus, pruned)
    cached.write_text(json.dumps(rows))
    print(
        f"seed {seed}: {len(rows)} variants evaluated ({args.evaluator}) in {time.monotonic() - t0:.0f} s", flush=True
    )
    return {"seed": seed, "key": model_dir.name, "record": record, "specialisation": specialisation, "rows": rows}


def write(args, results: list[dict], started: float) -> str:
    elapsed = time.monotonic() - started
    tables = {r["seed"]: r["rows"] for r in results}
    how = (
        "in-process: transformers greedy answers under routing masks, scored by the evaluators' parser"
        if args.evaluator == "in-process"
        else "every variant served by a real vLLM CPU server, `run_eval`"
    )
    models = "\n".join(
        f"| {r['seed']} | {r['key']} | `{r['record']['weights_sha256'][:16]}` | {r['record']['steps']} | "
        f"{r['record']['first_loss']:.2f} -> {r['record']['final_loss']:.2f} | {r['record']['train_seconds']:.0f} | "
        f"{r['specialisation']['trained']} | {r['specialisation']['untrained (same architecture and seed)']} |"
        for r in results
    )
    sections = [
        "# Demo results (measured)",
        f"Re-measure: `nice .venv/bin/python bench/demo_results.py --train-seeds {args.train_seeds} "
        f"--random-seeds {args.random_seeds} --evaluator {args.evaluator} --methods {args.methods}` "
        f"(this run: {elapsed / 60:.0f} min on a shared 2-core CPU, models trained or reused as the table says).",
        f"Sets: the shipped `evaluators/sets/` (150 answerable + 60 made-up-entity + 60 none-of-the-above items "
        f"per domain). Evaluation: {how}. Pruning: biomedical calibration chats from the training data, "
        f"128 samples, one observation pass; random pruning with {args.random_seeds} pruning seed(s) per model.",
        "## Models (one per training seed)\n"
        "| training seed | cache key | weights sha256 | steps | loss | training s | routing TV per layer, trained "
        "| untrained |\n|---|---|---|---|---|---|---|---|\n" + models,
        f"## The study's findings over {len(results)} training seed(s)\n" + findings_over_seeds_text(tables),
        "## Method x ratio over training seeds (mean, min-max; random also over its pruning seeds)\n"
        + summary_over_seeds(tables),
    ]
    for r in results:
        sections.append(
            f"## Training seed {r['seed']}: method x ratio\n"
            + markdown_table(r["rows"])
            + "\n\n"
            + findings_text(r["rows"], None)
        )
        if args.evaluator == "vllm":
            sections.append(f"### Training seed {r['seed']}: flag AUROCs\n" + flag_table(r["rows"]))
    text = "\n\n".join(sections)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(
        json.dumps(
            [
                {k: v for k, v in r.items() if k != "record"} | {"weights_sha256": r["record"]["weights_sha256"]}
                for r in results
            ],
            indent=1,
        )
    )
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--train-seeds", type=int, default=3, help="models trained with seeds 0..N-1")
    parser.add_argument("--random-seeds", type=int, default=3, help="random-pruning seeds per model")
    parser.add_argument("--evaluator", choices=("in-process", "vllm"), default="in-process")
    parser.add_argument("--parallel", type=int, default=2, help="vLLM servers at once (--evaluator vllm)")
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "demo_results.md")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # evaluation in this process; training pins its own numerics in a child
    started = time.monotonic()
    cache = Path(args.cache_dir or default_cache_dir())
    results = []
    for seed in range(args.train_seeds):
        results.append(one_seed(args, seed, cache))
        write(args, results, started)  # a partial file survives an interrupted run
    print(write(args, results, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
