"""Certified flags on the demo: p_wrong's separation and each certificate, per served variant and gate domain.

    .venv/bin/python bench/reliability_demo.py [--cache-dir DIR] [--limit N] [--train-seeds 0,1,2] [--no-global]
        [--md bench/reliability_demo.md]

Uses the demo's own steps: the demo model (shipped or cached), the served pair pruned on biomedical
calibration data, and `demo.evaluation.evaluate_served` (the base and the served variants on the utility
and reliability sets through real vLLM CPU engines, with the base cross-check). Then it reads the cards'
`reliability` sections (docs/reliability.md) and writes one table: p_wrong AUROC with its bootstrap CI
(certifying half), the certificate (status, coverage, realised error among unflagged answers with its
exact upper bound), and the same without the base cross-check.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402
from demo.build import build_model, default_cache_dir  # noqa: E402
from demo.calibration import write_calibration, write_gate_reference  # noqa: E402
from demo.corpus import build_corpus  # noqa: E402
from demo.evaluation import evaluate_served  # noqa: E402
from demo.model_config import DemoModelConfig  # noqa: E402
from demo.variants import Variant, prune_variants, refit_gate  # noqa: E402
from moeprune.formats.report_card import ReportCard  # noqa: E402
from moeprune.reliability.certificate import upper_bound  # noqa: E402

SERVED = {"gate-25": 0.25, "gate-50": 0.5}
GLOBAL_VARIANT = "gate-50-global"


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def interval(entry) -> str:
    if entry is None or entry.value is None:
        return "-"
    ci = f" ({entry.ci95[0]:.2f}-{entry.ci95[1]:.2f})" if entry.ci95 else ""
    return f"{entry.value:.2f}{ci}"


def hindsight_coverage(items: list[dict], domain: str, alpha: float, delta: float) -> float | None:
    """The largest share of the certifying half a threshold on p_wrong could leave unflagged with its exact
    bound <= alpha, the threshold chosen *after* seeing these labels: a ceiling for any valid rule on this
    split, not a certificate (a rule that looked at the labels it is tested on certifies nothing)."""
    held = sorted(
        (
            r
            for r in items
            if (r.get("gate_domain") or "all") == domain and (r.get("reliability") or {}).get("split") == "certify"
        ),
        key=lambda r: r["reliability"]["p_wrong"],
    )
    if not held:
        return None
    errors, best = 0, 0
    for served, record in enumerate(held, 1):
        errors += record["label"] in ("wrong", "unparsed")
        if upper_bound(errors, served, delta) <= alpha:
            best = served
    return best / len(held)


def oracle_coverage(items: list[dict], domain: str, alpha: float, delta: float) -> float | None:
    """The largest share of the certifying half ANY ranking could leave unflagged with its exact bound <= alpha:
    every right answer first, then as many wrong ones as the bound allows. What the variant's own error
    rate permits, whatever the signals: a target above it cannot be met on this split."""
    held = [
        r
        for r in items
        if (r.get("gate_domain") or "all") == domain and (r.get("reliability") or {}).get("split") == "certify"
    ]
    if not held:
        return None
    wrong = sum(r["label"] in ("wrong", "unparsed") for r in held)
    right = len(held) - wrong
    best = max((right + k for k in range(wrong + 1) if upper_bound(k, right + k, delta) <= alpha), default=0)
    return best / len(held)


def free_text(entry) -> str:
    """The free-text answers of a cell (evaluators/answer_forms.py): how many, how many wrong, and among the
    certifying half's unflagged ones the realised error with its bound."""
    form = entry.by_form.get("free_text")
    if form is None:
        return "-"
    served = (
        f"{form.errors_unflagged}/{form.n_unflagged} unflagged wrong (<= {pct(form.error_upper)})"
        if form.n_unflagged
        else "none unflagged"
    )
    return f"{form.n} ({form.n_wrong} wrong); {served}"


def rows_of(name: str, card: ReportCard, items: list[dict], without: bool = False) -> list[str]:
    section = card.reliability
    domains = (section.without_base_check if without else section.domains) or {}
    rows = []
    for domain, entry in sorted(domains.items()):
        cert = entry.certificate
        auroc = (entry.quality.get("p_wrong") or {}).get("auroc")
        bound = "-" if cert.error_upper is None else f"{pct(cert.realised_error)} (<= {pct(cert.error_upper)})"
        ceiling = "-" if without else pct(hindsight_coverage(items, domain, section.alpha, section.delta))
        oracle = "-" if without else pct(oracle_coverage(items, domain, section.alpha, section.delta))
        rows.append(
            f"| {name} | {domain} | {'off' if without else 'on'} | {entry.n} | {entry.n_wrong} "
            f"| {entry.n_abstained} | {interval(auroc)} | {cert.status} | {pct(cert.coverage)} | {bound} "
            f"| {ceiling} | {oracle} | {free_text(entry)} |"
        )
    return rows


def table(cards: dict[str, Path]) -> str:
    lines = [
        "| variant | gate domain | base check | answers | wrong | abstained | AUROC of p_wrong (95% CI) "
        "| certificate | coverage | error among unflagged (one-sided 95% bound) | hindsight ceiling "
        "| any-ranking ceiling | free-text answers (wrong); certifying half |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, path in cards.items():
        card = ReportCard.load(path)
        if card.reliability is None:
            continue
        items_path = Path(path).parent / "items.jsonl"
        items = [json.loads(line) for line in items_path.read_text().splitlines()] if items_path.exists() else []
        lines += rows_of(name, card, items)
        if card.reliability.without_base_check:
            lines += rows_of(name, card, items, without=True)
    return "\n".join(lines)


def prune_global(model_dir: Path, variants_dir: Path, calibration: Path, reference: Path) -> Variant:
    """gate-50 with `--allocation global` (the same total of kept experts, uneven per layer): does a variant
    that keeps more of its domain make the issue's coverage target reachable? Measured beside the served pair,
    not served by the demo."""
    from pruning.pipeline import run_prune

    out = variants_dir / GLOBAL_VARIANT
    if not (out / "pruning.json").exists():
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        run_prune(
            model_dir,
            staging,
            method="gate",
            ratio=0.5,
            allocation="global",
            seed=0,
            calibration=[calibration],
            gate_reference=[reference],
            samples=128,
            progress=False,
            overwrite=True,
        )
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    else:
        refit_gate(out, calibration, reference)
    return Variant(GLOBAL_VARIANT, out, "gate", 0.5)


def one_seed(seed: int, cache: Path, limit: int | None, with_global: bool) -> dict:
    """Build (train, or take the shipped weights for seed 0) the demo model of one training seed, prune the served
    pair (and gate-50 with global allocation), evaluate them with the base cross-check; the cards' paths."""
    cfg = DemoModelConfig(seed=seed)
    model_dir, record = build_model(cfg, cache, use_shipped=True)
    run_dir = cache / "runs" / model_dir.name
    corpus = build_corpus(cfg.corpus_seed)
    calibration = write_calibration(corpus, run_dir / "calibration-biomedical.jsonl")
    reference = write_gate_reference(corpus, run_dir / "gate-reference-general.jsonl")
    pruned = prune_variants(
        model_dir, run_dir / "variants", calibration, ["gate"], sorted(SERVED.values()), gate_reference=reference
    )
    served = [v for v in pruned if v.name in SERVED]
    if with_global:
        served.append(prune_global(model_dir, run_dir / "variants", calibration, reference))
    started = time.monotonic()
    cards = evaluate_served(
        Variant("base", model_dir), served, run_dir / "cards", limit=limit, use_shipped=False
    )  # measured here, never the shipped cards
    return {"seed": seed, "record": record, "cards": cards, "seconds": time.monotonic() - started}


def over_seeds(runs: list[dict]) -> str:
    """One line per variant, domain and base-check setting: each seed's AUROC and certificate side by side."""
    per_key: dict[tuple, dict[int, tuple]] = {}
    for run in runs:
        for name, path in run["cards"].items():
            section = ReportCard.load(path).reliability
            if section is None:
                continue
            for without, domains in ((False, section.domains), (True, section.without_base_check)):
                for domain, entry in sorted((domains or {}).items()):
                    auroc = (entry.quality.get("p_wrong") or {}).get("auroc")
                    per_key.setdefault((name, domain, without), {})[run["seed"]] = (auroc, entry.certificate)
    seeds = [run["seed"] for run in runs]
    lines = [
        "| variant | gate domain | base check | "
        + " | ".join(f"seed {s}: AUROC / certificate, coverage" for s in seeds)
        + " |",
        "|---|---|---|" + "---|" * len(seeds),
    ]
    for (name, domain, without), found in per_key.items():
        cells = []
        for s in seeds:
            if s not in found:
                cells.append("-")
                continue
            auroc, cert = found[s]
            cells.append(f"{interval(auroc)} / {cert.status}, {pct(cert.coverage)}")
        lines.append(f"| {name} | {domain} | {'off' if without else 'on'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--train-seeds",
        default="0",
        help="comma-separated training seeds of the demo model (0 = the shipped weights; any other "
        "seed is trained here first, ~7-20 min each on a 2-core machine)",
    )
    parser.add_argument(
        "--no-global",
        action="store_true",
        help="skip gate-50 pruned with --allocation global (measured beside the served pair)",
    )
    parser.add_argument("--md", type=Path, default=None, help="write the tables (with machine and date) here")
    args = parser.parse_args()
    cache = args.cache = args.cache_dir or default_cache_dir()
    seeds = [int(s) for s in args.train_seeds.split(",") if s.strip()]
    runs = []
    for seed in seeds:
        run = one_seed(seed, cache, args.limit, not args.no_global)
        runs.append(run)
        print(f"## training seed {seed}\n" + table(run["cards"]), flush=True)
        if args.md:
            write_md(args, runs)
    if len(runs) > 1:
        print(over_seeds(runs))
    return 0


def write_md(args, runs: list[dict]) -> None:
    cpu = cpu_name()
    command = ".venv/bin/python " + " ".join(["bench/reliability_demo.py", *sys.argv[1:]])
    parts = [
        f"## {datetime.date.today()}, {cpu}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end\n\nRe-run: `{command}`\n"
    ]
    if len(runs) > 1:
        parts.append(
            "### Over training seeds (AUROC of p_wrong with its 95% CI / certificate, coverage)\n\n"
            + over_seeds(runs)
            + "\n"
        )
    for run in runs:
        record = run["record"]
        parts.append(
            f"### Training seed {run['seed']}: model {record['key']} ({record.get('source', 'trained')}), "
            f"weights sha256 `{record['weights_sha256'][:16]}`; evaluation of base + "
            f"{', '.join(n for n in run['cards'] if n != 'base')} took {run['seconds']:.0f} s "
            f"(vLLM CPU, float32)\n\n" + table(run["cards"]) + "\n"
        )
    text = args.md.read_text() if args.md.exists() else ""
    head, _, _ = text.partition("\n## ")
    marker = "<!-- end generated -->"
    tail = "\n" + marker + text.split(marker, 1)[1] if marker in text else ""
    args.md.write_text((head.rstrip() + "\n\n" if head.strip() else "") + "\n".join(parts) + tail)
    args.md.with_suffix(".json").write_text(
        json.dumps(
            {str(run["seed"]): {name: in_cache(p, args.cache) for name, p in run["cards"].items()} for run in runs},
            indent=2,
        )
        + "\n"
    )


def in_cache(path: Path, cache: Path) -> str:
    """A card's path as `<cache>/...`: what is committed names no machine's directories."""
    return "<cache>/" + str(Path(path).relative_to(cache)) if Path(path).is_relative_to(cache) else Path(path).name


if __name__ == "__main__":
    raise SystemExit(main())
