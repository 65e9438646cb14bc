"""`moeprune demo`: train (or reuse) the demo MoE, prune it, evaluate on vLLM, report, serve.

The critical path to a served gateway is short: the shipped model (verified and copied into the
cache; `--retrain` trains it here instead and says whether the weights match), prune (seconds),
evaluate the base and the two variants to serve, write the report, start the
gateway. The rest of the sweep is evaluated behind the running gateway, one
engine at a time, and the report is rewritten when it is done. Every step is
cached, so a second run goes straight to serving. Reduced runs (CI, quick
looks) pass a smaller training budget, fewer methods/ratios, an item limit
and `--no-serve`.
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
    from demo.serving import DEFAULT_SERVED
    from demo.variants import ALL_METHODS, ALL_RATIOS, DEFAULT_METHODS

    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="where the report and variants.yaml go")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="model/variant/eval cache (default $MOEPRUNE_CACHE_DIR or ~/.cache/moe-prune-serve)",
    )
    parser.add_argument(
        "--methods",
        type=_csv(str, ALL_METHODS),
        default=None,
        help=f"pruning methods (default: {','.join(DEFAULT_METHODS)}; --full: all seven)",
    )
    parser.add_argument("--ratios", type=_csv(float), default=list(ALL_RATIOS))
    parser.add_argument("--full", action="store_true", help="the full table: all seven methods x the ratios")
    parser.add_argument(
        "--serve",
        type=_csv(str),
        default=list(DEFAULT_SERVED),
        help=f"the two pruned variants served beside the base (default: {','.join(DEFAULT_SERVED)})",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train the model here (7-25 min on 2 cores) instead of using the shipped weights, and "
        "say whether the two are bit-identical",
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    parser.add_argument("--train-steps", type=int, default=None, help="cap on training steps (reduced runs)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of each set")
    # 3: the base and the two served variants start together, so their ~24 s start-ups overlap in one round
    # (each engine runs one OpenMP thread on a 2-core machine, so three at once do not spin-wait).
    parser.add_argument("--parallel", type=int, default=3, help="vLLM servers evaluating at once (default 3)")
    parser.add_argument("--no-serve", action="store_true", help="stop after the report (CI)")
    parser.add_argument(
        "--evaluate-here",
        action="store_true",
        help="evaluate the served pair and the base on this machine even where the cards shipped "
        "with the weights match (demo/shipped_cards.py)",
    )
    parser.add_argument(
        "--clean-cache",
        action="store_true",
        help="remove the cache's other demo models and runs (older recipes, other seeds, killed "
        "builds); not while another demo serves from the same cache",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)


def model_config(args):
    from demo.model_config import DemoModelConfig

    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.train_steps is not None:
        overrides["max_steps"] = args.train_steps
    return DemoModelConfig(**overrides)


def methods_of(args) -> list[str]:
    from demo.variants import ALL_METHODS, DEFAULT_METHODS

    if args.methods is not None and args.full:
        raise UserError("give --methods or --full, not both")
    return list(ALL_METHODS if args.full else args.methods or DEFAULT_METHODS)


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
    from demo.build import build_model, default_cache_dir
    from demo.calibration import write_calibration, write_gate_reference
    from demo.corpus import build_corpus
    from demo.evaluation import evaluate_all, evaluate_served
    from demo.serving import choose_served, serve_variants, usage_text, write_variants_yaml
    from demo.variants import Variant, prune_variants

    check_args(args)
    methods = methods_of(args)
    started = time.monotonic()
    cache = Path(args.cache_dir or default_cache_dir())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model_config(args)

    model_dir, record = build_model(cfg, cache, use_shipped=not args.retrain)
    print(
        f"demo: model {model_dir.name} {model_origin(record)} (loss {record['first_loss']:.2f} -> "
        f"{record['final_loss']:.2f}; weights sha256 {record['weights_sha256'][:16]})"
    )
    if record["source"] == "trained":
        print(f"demo: {compare_with_shipped(cfg, record)}")

    tidy_cache(cache, model_dir.name, args.clean_cache)

    corpus = build_corpus(cfg.corpus_seed)
    run_dir = cache / "runs" / model_dir.name
    calibration = write_calibration(corpus, run_dir / "calibration-biomedical.jsonl")
    t0 = time.monotonic()
    reference = write_gate_reference(corpus, run_dir / "gate-reference-general.jsonl")
    pruned = prune_variants(
        model_dir, run_dir / "variants", calibration, methods, args.ratios, gate_reference=reference
    )
    print(f"demo: {len(pruned)} pruned variants ready in {time.monotonic() - t0:.0f} s (calibration: {calibration})")

    variants = {"base": Variant("base", model_dir), **{v.name: v for v in pruned}}
    served = choose_served(args.serve, variants)
    if not served and not args.no_serve:
        raise UserError("no pruned variant to serve; give --methods and --ratios")
    first = [variants["base"], *(variants[name] for name in served)]
    rest = [v for v in variants.values() if v not in first]
    t0 = time.monotonic()
    # The served pair and the base: utility and reliability sets, with the base cross-check, so their
    # cards carry the certificates the gateway enforces (issue 26). The rest: utility sets only.
    cards = evaluate_served(
        first[0], first[1:], run_dir / "cards", limit=args.limit, use_shipped=not args.evaluate_here
    )
    if args.no_serve and rest:
        cards.update(evaluate_all(rest, run_dir / "cards", limit=args.limit, parallel=args.parallel))
    print(f"demo: evaluated {', '.join(cards)} on vLLM in {time.monotonic() - t0:.0f} s")
    report = write_results(cards, out, record)
    print(f"demo: report {report} ({time.monotonic() - started:.0f} s in all)")
    config = write_variants_yaml(out / "variants.yaml", variants, served, cards)
    if args.no_serve:  # the served trio's file is written all the same: `moeprune serve --config` it later
        print(f"demo: serve it later with: moeprune serve --config {config}")
        return 0

    fact = corpus.facts[0]
    question = fact.relation.questions[fact.trained_templates()[0]].format(e=fact.entity)
    print(usage_text(f"http://{args.host}:{args.port}", question, report, served))
    behind = SweepBehindGateway(
        rest, cards, run_dir / "cards", out, record, args.limit, ready_url=f"http://{args.host}:{args.port}/ready"
    )
    behind.start()
    try:
        serve_variants(config, args.host, args.port)
    finally:
        behind.stop()
    return 0


def model_origin(record: dict) -> str:
    """How the model got here, in the words bench/first_run.py looks for."""
    if record["source"] == "shipped":
        return "shipped with the repository, " + ("reused from cache" if record["cached"] else "sha256 verified")
    return "trained earlier, reused from cache" if record["cached"] else f"trained in {record['train_seconds']:.0f} s"


def compare_with_shipped(cfg, record: dict) -> str:
    """Whether the model trained here equals the shipped one (said, never fatal: on another CPU it may not)."""
    from demo import shipped
    from demo.build import shipped_for
    from demo.corpus import build_corpus

    ours = shipped_for(build_corpus(cfg.corpus_seed), cfg)
    return shipped.comparison(record["weights_sha256"], ours or shipped.load_record(), same_recipe=ours is not None)


def tidy_cache(cache: Path, keep: str, clean: bool) -> None:
    """Say what else the cache holds (an upgrade's new recipe leaves the old model behind), or remove it."""
    from demo.cache_entries import describe, other_entries, remove

    others = other_entries(cache, keep)
    if not others:
        return
    if clean:
        print(f"demo: removing {describe(others)} from {cache}")
        remove(others)
    else:
        print(f"demo: {cache} also holds {describe(others)}; --clean-cache removes them")


def write_results(cards: dict[str, Path], out: Path, record: dict) -> Path:
    """The HTML report, results.md and results.json for the cards evaluated so far."""
    from demo.summary import card_row, certificate_lines, markdown_table, with_recovery
    from evaluators.report import render_report

    rows = with_recovery([card_row(name, path) for name, path in cards.items()])
    base = rows[0]
    print(
        f"demo: base biomedical {100 * (base['bio_acc'] or 0):.1f}%, "
        f"general {100 * (base['general_acc'] or 0):.1f}%, "
        f"refuses {100 * (base['refusal'] or 0):.1f}% of made-up entities"
    )
    report = render_report(list(cards.values()), out / "report")
    table = markdown_table(rows)
    model = f"Model {record['key']}, weights sha256 {record['weights_sha256']}."
    (out / "results.md").write_text(model + "\n\n" + table + "\n")
    (out / "results.json").write_text(
        json.dumps({"model": record["key"], "weights_sha256": record["weights_sha256"], "variants": rows}, indent=2)
    )
    print(table)
    for line in certificate_lines(cards):
        print(f"demo: reliability {line}")
    return report


class SweepBehindGateway:
    """Evaluates the rest of the sweep in a thread while the gateway serves, one engine at a time
    (the served engines need the CPU too), then rewrites the report. It starts once the gateway is ready,
    so its engine does not slow the served engines' start-up. `stop` cancels it and its engine."""

    def __init__(self, rest, cards, cards_dir, out, record, limit, ready_url: str | None = None):
        self.rest, self.cards, self.cards_dir, self.out = rest, dict(cards), cards_dir, out
        self.record, self.limit, self.ready_url = record, limit, ready_url
        self.live: set = set()
        self.cancel = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="demo-sweep")

    def start(self) -> None:
        if self.rest:
            print(
                f"demo: evaluating the other {len(self.rest)} variants behind the gateway; "
                f"the report is rewritten when they are done",
                flush=True,
            )
            self.thread.start()

    def _run(self) -> None:
        from demo.evaluation import evaluate_all

        self._wait_for_gateway()
        t0 = time.monotonic()
        try:
            done = evaluate_all(
                self.rest,
                self.cards_dir,
                limit=self.limit,
                parallel=1,
                progress=False,
                live=self.live,
                cancel=self.cancel,
            )
        except BaseException as exc:  # noqa: BLE001  (a thread's error must be told, not lost)
            if not self.cancel.is_set():
                print(f"demo: the sweep behind the gateway stopped: {exc}", flush=True)
            return
        self.cards.update(done)
        report = write_results(self.cards, self.out, self.record)
        print(
            f"demo: sweep of {len(self.cards)} variants done in {time.monotonic() - t0:.0f} s; report {report}",
            flush=True,
        )

    def _wait_for_gateway(self, timeout: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while self.ready_url and not self.cancel.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return
            self.cancel.wait(1)

    def stop(self) -> None:
        self.cancel.set()
        for engine in list(self.live):
            engine.terminate()
        if self.thread.is_alive():
            self.thread.join(timeout=60)
