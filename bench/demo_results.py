"""Run the full demo experiment and write bench/demo_results.md (the committed, measured numbers).

    nice .venv/bin/python bench/demo_results.py [--random-seeds 3] [--probe-seeds 20] [--parallel 2]

1. trains (or reuses) the demo model, exactly as `moeprune demo` does;
2. measures routing specialisation (total variation between the biomedical and
   general routing distributions, per layer) for the trained model and for
   the same architecture untrained;
3. prunes with every method at 0.25/0.5/0.75 on biomedical calibration data
   (random with several seeds) and evaluates base and variants on real vLLM;
4. spreads random pruning over many more seeds in-process (routing masks,
   transformers, answerable sets only), since one vLLM server per seed costs minutes;
5. checks the study's four findings and writes the tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.demo.build import build_model, default_cache_dir  # noqa: E402
from app.demo.calibration import write_calibration  # noqa: E402
from app.demo.corpus import build_corpus  # noqa: E402
from app.demo.evaluation import evaluate_all  # noqa: E402
from app.demo.model_config import DemoModelConfig  # noqa: E402
from app.demo.summary import card_row, markdown_table, with_recovery  # noqa: E402
from app.demo.variants import ALL_METHODS, ALL_RATIOS, Variant, prune_variants  # noqa: E402
from bench.demo_findings import findings_text, flag_table, random_spread_rows  # noqa: E402
from bench.demo_probe import probe_random_seeds, routing_specialisation  # noqa: E402


def write(args, rows, probe, specialisation, record, model_dir, started) -> str:
    elapsed = time.monotonic() - started
    text = "\n\n".join([
        "# Demo results (measured)",
        f"Re-measure: `nice .venv/bin/python bench/demo_results.py --random-seeds {args.random_seeds} "
        f"--probe-seeds {args.probe_seeds} --methods {args.methods}` (this run: {elapsed / 60:.0f} min on a shared 2-core CPU; "
        f"model {model_dir.name}, {'reused' if record['cached'] else 'trained'}: "
        f"{record['steps']} steps, loss {record['first_loss']:.2f} -> {record['final_loss']:.2f}, "
        f"training {record['train_seconds']:.0f} s).",
        "Sets: the shipped `evaluators/sets/` (150 answerable + 60 made-up-entity + 60 none-of-the-above items "
        "per domain), every variant served by a real vLLM CPU server and evaluated by `evaluators.runner.run_eval`. "
        "Pruning: biomedical calibration chats from the training data, 128 samples, one observation pass.",
        "## Routing specialisation (total variation, biomedical vs general questions, per MoE layer)\n"
        + "\n".join(f"- {name}: {values}" for name, values in specialisation.items()),
        "## Method x ratio\n" + markdown_table(rows),
        "## Random pruning over seeds\n" + random_spread_rows(rows, probe),
        "## The study's findings at this scale\n" + findings_text(rows, probe),
        "## Reliability flags: AUROC for catching wrong answers\n" + flag_table(rows),
    ])
    args.out.write_text(text + "\n")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--random-seeds", type=int, default=1, help="random-pruning seeds evaluated on vLLM")
    parser.add_argument("--probe-seeds", type=int, default=10, help="random-pruning seeds probed in-process")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "demo_results.md")
    args = parser.parse_args()

    started = time.monotonic()
    cache = args.cache_dir or default_cache_dir()
    cfg = DemoModelConfig(threads=args.threads)
    model_dir, record = build_model(cfg, cache)
    corpus = build_corpus(cfg.corpus_seed)
    run_dir = cache / "runs" / model_dir.name
    calibration = write_calibration(corpus, run_dir / "calibration-biomedical.jsonl")

    specialisation = routing_specialisation(model_dir, cfg, corpus)
    print("routing specialisation:", specialisation, flush=True)
    methods = [m for m in args.methods.split(",") if m]
    pruned = prune_variants(model_dir, run_dir / "variants", calibration, methods, ALL_RATIOS,
                            seeds=tuple(range(args.random_seeds)))
    variants = [Variant("base", model_dir), *pruned]
    cards = evaluate_all(variants, run_dir / "cards", parallel=args.parallel)
    rows = with_recovery([card_row(name, path) for name, path in cards.items()])
    write(args, rows, None, specialisation, record, model_dir, started)  # in case the probe is interrupted
    probe = probe_random_seeds(model_dir, corpus, pruned, ALL_RATIOS, args.probe_seeds) if args.probe_seeds else None
    print(write(args, rows, probe, specialisation, record, model_dir, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
