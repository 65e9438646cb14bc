"""Does the demo reproduce the study's findings? Checks with explicit thresholds, per training seed and over seeds.

Thresholds are stated in the text they produce, so a reader can disagree with
them; every claim prints the numbers it rests on. A finding is "reproduced"
over several training seeds only when it holds for every seed: one lucky
training run is what the issue that asked for seeds was about.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _sd(values):
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else 0.0


# One-sided 95% quantiles of Student's t by degrees of freedom (beyond 30: the normal's 1.645).
_T95 = [
    6.314,
    2.920,
    2.353,
    2.132,
    2.015,
    1.943,
    1.895,
    1.860,
    1.833,
    1.812,
    1.796,
    1.782,
    1.771,
    1.761,
    1.753,
    1.746,
    1.740,
    1.734,
    1.729,
    1.725,
    1.721,
    1.717,
    1.714,
    1.711,
    1.708,
    1.706,
    1.703,
    1.701,
    1.699,
    1.697,
]


def random_bar(values) -> float:
    """The one-sided 95% upper confidence bound of random pruning's MEAN accuracy (Student t over its seeds).

    "Beats random" asks whether a method does better than random pruning does on
    average. Random's seed-to-seed spread is large at mild ratios (a lucky draw
    keeps every expert the domain needs and reaches the base), so a bar of mean
    + 1 sd of single draws can sit above the base itself and no method could
    pass it; the uncertainty that matters is that of the mean, which more
    pruning seeds shrink. One seed gives no interval: its value is the bar.
    """
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return _mean(values)
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.645
    return _mean(values) + t * _sd(values) / len(values) ** 0.5


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def by_ratio(rows, ratio, random: bool):
    return [r for r in rows if r["ratio"] == ratio and (r["method"] == "random") == random]


def ratios_of(rows):
    return sorted({r["ratio"] for r in rows if r["ratio"] is not None})


@dataclass(frozen=True)
class Check:
    """One finding on one training run: whether it holds, the number it rests on, and the detail."""

    title: str
    holds: bool
    value: float | None  # the headline statistic, summarised over seeds
    unit: str  # how to print value ("recovery", "%")
    detail: str


def moderate_keeps_in_domain(rows) -> Check:
    mild = ratios_of(rows)[0]
    bio_rec = [r["bio_acc_recovery"] for r in by_ratio(rows, mild, random=False) if r["bio_acc_recovery"] is not None]
    median = statistics.median(bio_rec) if bio_rec else None
    return Check(
        f"Moderate pruning keeps in-domain utility (median biomedical recovery of the data-driven methods "
        f"at ratio {mild} >= 0.95)",
        median is not None and median >= 0.95,
        median,
        "recovery",
        f"median {'-' if median is None else f'{median:.3f}'}, range "
        f"{min(bio_rec, default=0):.2f}-{max(bio_rec, default=0):.2f}",
    )


def extreme_raises_hallucination(rows) -> Check:
    base = next(r for r in rows if r["variant"] == "base")
    ratios = ratios_of(rows)
    extreme = ratios[-1]
    halluc = _mean([r["hallucination"] for r in by_ratio(rows, extreme, random=False)])
    rise = None if halluc is None or base["hallucination"] is None else halluc - base["hallucination"]
    per_ratio = ", ".join(
        f"{r}: {_pct(_mean([x['hallucination'] for x in by_ratio(rows, r, False)]))}%" for r in ratios
    )
    return Check(
        f"Extreme pruning raises the hallucination rate on made-up entities (data-driven mean at ratio "
        f"{extreme} at least 5 points above base)",
        rise is not None and rise >= 0.05,
        rise,
        "points",
        f"base {_pct(base['hallucination'])}%, ratio {extreme}: {_pct(halluc)}%; per ratio: {per_ratio}",
    )


FLOOR = 0.25  # below this biomedical recovery the in-domain model has collapsed too


def cross_domain_degrades_faster(rows) -> Check:
    """General recovery below biomedical at every ratio where the biomedical model still works.

    Where both domains have collapsed (biomedical recovery under FLOOR: a few percent right on each side),
    "which degrades faster" has no answer, so such ratios are shown but not judged; a table where every
    ratio is collapsed does not reproduce the finding.
    """
    gaps, parts = [], []
    for ratio in ratios_of(rows):
        data = by_ratio(rows, ratio, random=False)
        bio, gen = _mean([r["bio_acc_recovery"] for r in data]), _mean([r["general_acc_recovery"] for r in data])
        if bio is None or gen is None:
            continue
        judged = bio >= FLOOR
        if judged:
            gaps.append(bio - gen)
        parts.append(f"{ratio}: bio {bio:.2f} vs general {gen:.2f}{'' if judged else ' (both collapsed, not judged)'}")
    holds = bool(gaps) and all(g > 0.02 for g in gaps)
    return Check(
        "Cross-domain (general) accuracy drops faster than in-domain (biomedical) under biomedical "
        f"calibration (mean general recovery more than 0.02 below biomedical at every ratio where the "
        f"biomedical recovery is still >= {FLOOR})",
        holds,
        min(gaps, default=None),
        "recovery gap (smallest over judged ratios)",
        "; ".join(parts),
    )


def data_driven_beats_random(rows, probe: dict | None = None) -> Check:
    beats, skipped = [], []
    for ratio in ratios_of(rows):
        bio = _mean([r["bio_acc_recovery"] for r in by_ratio(rows, ratio, random=False)])
        if bio is not None and bio < FLOOR:  # every method collapsed: a floor, not a contest (as finding 3)
            skipped.append(f"{ratio}: data-driven biomedical recovery {bio:.2f}, not judged")
            continue
        entry = (probe or {}).get("ratios", {}).get(ratio)
        if entry and entry["random"] and entry["methods"]:
            # many seeds, measured in-process on the answerable sets (same measure for both sides)
            rand = [b for b, _ in entry["random"]]
            scores = {m: b for m, (b, _) in entry["methods"].items()}
            source = f"in-process, {len(rand)} seeds"
        else:
            rand = [r["bio_acc"] for r in by_ratio(rows, ratio, random=True)]
            scores = {r["method"]: r["bio_acc"] for r in by_ratio(rows, ratio, random=False)}
            source = f"{len(rand)} random seed(s)"
        if not rand or not scores:
            continue
        bar = random_bar(rand)
        winners = [m for m, b in scores.items() if b is not None and b > bar]
        beats.append((ratio, len(winners), len(scores), _mean(rand), _sd(rand), bar, source))
    holds = bool(beats) and all(w > n / 2 for _, w, n, *_ in beats)
    share = min((w / n for _, w, n, *_ in beats), default=None)
    return Check(
        "Data-driven methods beat random (biomedical accuracy above the one-sided 95% upper confidence "
        "bound of random pruning's mean accuracy, for most methods at every ratio where their biomedical "
        f"recovery is still >= {FLOOR})",
        holds,
        share,
        "share of methods above random (lowest over judged ratios)",
        "; ".join(
            [
                f"{r}: {w}/{n} methods above random's bound {_pct(bar)}% (random {_pct(m)}±{_pct(s)}%, {src})"
                for r, w, n, m, s, bar, src in beats
            ]
            + skipped
        ),
    )


def checks(rows: list[dict], probe: dict | None = None) -> list[Check]:
    return [
        moderate_keeps_in_domain(rows),
        extreme_raises_hallucination(rows),
        cross_domain_degrades_faster(rows),
        data_driven_beats_random(rows, probe),
    ]


def findings_text(rows: list[dict], probe: dict | None) -> str:
    """One training run's verdicts."""
    return "\n".join(
        f"{i}. {c.title}: {'REPRODUCED' if c.holds else 'NOT reproduced'} ({c.detail})."
        for i, c in enumerate(checks(rows, probe), start=1)
    )


def verdicts_over_seeds(tables: dict[int, list[dict]]) -> list[tuple[str, bool, list[Check]]]:
    """Per finding: its title, whether it holds for EVERY training seed, and each seed's check."""
    per_seed = {seed: checks(rows) for seed, rows in sorted(tables.items())}
    titles = [c.title for c in next(iter(per_seed.values()))]
    return [
        (title, all(per_seed[s][i].holds for s in per_seed), [per_seed[s][i] for s in per_seed])
        for i, title in enumerate(titles)
    ]


def _spread(values, unit: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    scale, suffix = (100, " points") if unit == "points" else (1, "")
    fmt = (lambda v: f"{scale * v:.1f}") if unit == "points" else (lambda v: f"{v:.2f}")
    return f"mean {fmt(_mean(values))}{suffix} (min {fmt(min(values))}, max {fmt(max(values))})"


def findings_over_seeds_text(tables: dict[int, list[dict]]) -> str:
    """Each finding with its verdict over the training seeds and the spread of the number it rests on."""
    seeds = sorted(tables)
    lines = []
    for i, (title, holds, per_seed) in enumerate(verdicts_over_seeds(tables), start=1):
        held = sum(c.holds for c in per_seed)
        verdict = (
            f"REPRODUCED in all {len(seeds)} training seeds"
            if holds
            else f"NOT reproduced: holds in {held} of {len(seeds)} training seeds"
        )
        spread = _spread([c.value for c in per_seed], per_seed[0].unit)
        lines.append(f"{i}. {title}: **{verdict}**; {per_seed[0].unit}: {spread}.")
        lines += [
            f"   - seed {seed}: {'holds' if c.holds else 'does not hold'} ({c.detail})"
            for seed, c in zip(seeds, per_seed)
        ]
    return "\n".join(lines)


def summary_over_seeds(
    tables: dict[int, list[dict]],
    keys=("bio_acc", "general_acc", "hallucination", "bio_acc_recovery", "general_acc_recovery"),
) -> str:
    """Method x ratio, each cell the mean and min-max over training seeds (random: over its pruning seeds too)."""
    groups: dict[tuple, list[dict]] = {}
    for rows in tables.values():
        for r in rows:
            groups.setdefault((r["method"] or "base", r["ratio"] or 0.0), []).append(r)
    names = {
        "bio_acc": "bio acc %",
        "general_acc": "general acc %",
        "hallucination": "hallucination on made-up %",
        "bio_acc_recovery": "bio recovery",
        "general_acc_recovery": "general recovery",
    }
    lines = [
        "| method | ratio | n | " + " | ".join(names[k] for k in keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    order = sorted(groups, key=lambda g: (g[0] != "base", g[0] != "random", g[0], g[1]))
    for method, ratio in order:
        members = groups[(method, ratio)]
        cells = []
        for key in keys:
            values = [m[key] for m in members if m.get(key) is not None]
            if not values:
                cells.append("-")
                continue
            scale = 100 if key in ("bio_acc", "general_acc", "hallucination") else 1
            digits = 1 if scale == 100 else 2
            mean = f"{scale * _mean(values):.{digits}f}"
            cells.append(
                mean
                if len(values) == 1
                else f"{mean} ({scale * min(values):.{digits}f}-{scale * max(values):.{digits}f})"
            )
        lines.append(f"| {method} | {ratio:g} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def random_spread_rows(rows: list[dict], probe: dict | None) -> str:
    lines = [
        "| ratio | random on vLLM: seeds, bio %, general % | random in-process: seeds, bio % (min-max), "
        "general % (min-max) | data-driven in-process: bio / general % |",
        "|---|---|---|---|",
    ]
    for ratio in ratios_of(rows):
        rand = by_ratio(rows, ratio, random=True)
        vllm = (
            f"{len(rand)}, {_pct(_mean([r['bio_acc'] for r in rand]))}±{_pct(_sd([r['bio_acc'] for r in rand]))}, "
            f"{_pct(_mean([r['general_acc'] for r in rand]))}±{_pct(_sd([r['general_acc'] for r in rand]))}"
        )
        in_process, methods = "-", "-"
        entry = (probe or {}).get("ratios", {}).get(ratio)
        if entry:
            bio = [b for b, _ in entry["random"]]
            gen = [g for _, g in entry["random"]]
            in_process = (
                f"{len(bio)}, {_pct(_mean(bio))}±{_pct(_sd(bio))} ({_pct(min(bio))}-{_pct(max(bio))}), "
                f"{_pct(_mean(gen))}±{_pct(_sd(gen))} ({_pct(min(gen))}-{_pct(max(gen))})"
            )
            methods = ", ".join(f"{m} {_pct(b)}/{_pct(g)}" for m, (b, g) in entry["methods"].items())
        lines.append(f"| {ratio} | {vllm} | {in_process} | {methods} |")
    if probe:
        lines.append(f"\nIn-process base: bio {_pct(probe['base'][0])}%, general {_pct(probe['base'][1])}%.")
    return "\n".join(lines)


def flag_table(rows: list[dict]) -> str:
    names = sorted({name for r in rows for name in r["flags"]})
    if not names:
        return "No flag AUROCs in the report cards."
    lines = ["| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in rows:
        cells = ["-" if r["flags"].get(n) is None else f"{r['flags'][n]:.2f}" for n in names]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    means = [_mean([r["flags"].get(n) for r in rows]) for n in names]
    lines.append("| mean | " + " | ".join("-" if m is None else f"{m:.2f}" for m in means) + " |")
    return "\n".join(lines)
