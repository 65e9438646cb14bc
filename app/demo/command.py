"""`moeprune demo`: train (or reuse) the demo MoE, prune it, evaluate every variant on vLLM, report, serve.

Every step is cached, so a second run goes straight to serving. Reduced runs
(CI, quick looks) pass a smaller training budget, fewer methods/ratios, an
item limit and `--no-serve`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
import time
from pathlib import Path

from moeprune.errors import UserError


def _csv(kind, valid=None):
    def parse(text: str):
        items = [kind(part.strip()) for part in text.split(",") if part.strip()]
        if valid is not None:
            bad = [item for item in items if item not in valid]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {', '.join(map(str, bad))}; valid: {', '.join(valid)}")
        if not items:
            raise argparse.ArgumentTypeError("give at least one value")
        return items
    return parse


def configure(parser: argparse.ArgumentParser) -> None:
    from app.demo.variants import ALL_METHODS, ALL_RATIOS

    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="where the report and variants.yaml go")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="model/variant/eval cache (default $MOEPRUNE_CACHE_DIR or ~/.cache/moe-prune-serve)")
    parser.add_argument("--methods", type=_csv(str, ALL_METHODS), default=list(ALL_METHODS))
    parser.add_argument("--ratios", type=_csv(float), default=list(ALL_RATIOS))
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    parser.add_argument("--train-steps", type=int, default=None, help="cap on training steps (reduced runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for training (0 = all cores)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of each set")
    parser.add_argument("--parallel", type=int, default=2, help="vLLM servers evaluating at once")
    parser.add_argument("--no-serve", action="store_true", help="stop after the report (CI)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)


def model_config(args):
    from app.demo.model_config import DemoModelConfig

    overrides = {"threads": args.threads}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.train_steps is not None:
        overrides["max_steps"] = args.train_steps
    return DemoModelConfig(**overrides)


def check_args(args) -> None:
    if any(not 0 < r < 1 for r in args.ratios):
        raise UserError(f"--ratios must lie strictly between 0 and 1, got {args.ratios}")
    for flag in ("epochs", "train_steps", "limit", "parallel"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """`kill` stops the demo like Ctrl-C: cleanup (stopping vLLM engines) runs either way.

    The engines live in their own process groups, so nothing but this process
    can stop them; an unhandled SIGTERM would leave them running.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from app.demo.build import build_model, default_cache_dir
    from app.demo.calibration import write_calibration
    from app.demo.corpus import build_corpus
    from app.demo.evaluation import evaluate_all
    from app.demo.serving import pick_served, serve_variants, usage_text, write_variants_yaml
    from app.demo.summary import card_row, markdown_table, with_recovery
    from app.demo.variants import Variant, prune_variants
    from evaluators.report import render_report

    check_args(args)
    started = time.monotonic()
    cache = Path(args.cache_dir or default_cache_dir())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model_config(args)

    model_dir, record = build_model(cfg, cache)
    how = "reused from cache" if record["cached"] else f"trained in {record['train_seconds']:.0f} s"
    print(f"demo: model {model_dir.name} {how} (loss {record['first_loss']:.2f} -> {record['final_loss']:.2f})")

    corpus = build_corpus(cfg.corpus_seed)
    run_dir = cache / "runs" / model_dir.name
    calibration = write_calibration(corpus, run_dir / "calibration-biomedical.jsonl")
    t0 = time.monotonic()
    pruned = prune_variants(model_dir, run_dir / "variants", calibration, args.methods, args.ratios)
    print(f"demo: {len(pruned)} pruned variants ready in {time.monotonic() - t0:.0f} s (calibration: {calibration})")

    variants = {"base": Variant("base", model_dir), **{v.name: v for v in pruned}}
    t0 = time.monotonic()
    cards = evaluate_all(list(variants.values()), run_dir / "cards", limit=args.limit, parallel=args.parallel)
    rows = with_recovery([card_row(name, path) for name, path in cards.items()])
    base = rows[0]
    print(f"demo: evaluated {len(cards)} variants on vLLM in {time.monotonic() - t0:.0f} s; base: "
          f"biomedical {100 * (base['bio_acc'] or 0):.1f}%, general {100 * (base['general_acc'] or 0):.1f}%, "
          f"refuses {100 * (base['refusal'] or 0):.1f}% of made-up entities")

    report = render_report(list(cards.values()), out / "report")
    table = markdown_table(rows)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(table)
    print(f"demo: report {report} ({time.monotonic() - started:.0f} s in all)")
    if args.no_serve:
        return 0

    served = pick_served(rows, variants)
    if not served:
        raise UserError("no pruned variant to serve; give --methods and --ratios")
    config = write_variants_yaml(out / "variants.yaml", variants, served, cards)
    fact = corpus.facts[0]
    question = fact.relation.questions[fact.trained_templates()[0]].format(e=fact.entity)
    print(usage_text(f"http://{args.host}:{args.port}", question, report, served))
    serve_variants(config, args.host, args.port)
    return 0
