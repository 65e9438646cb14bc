"""Does the demo reproduce the study's findings? Checks with explicit thresholds, and their tables.

Thresholds are stated in the text they produce, so a reader can disagree with
them; every claim prints the numbers it rests on.
"""

from __future__ import annotations

import statistics


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _sd(values):
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def by_ratio(rows, ratio, random: bool):
    return [r for r in rows if r["ratio"] == ratio and (r["method"] == "random") == random]


def ratios_of(rows):
    return sorted({r["ratio"] for r in rows if r["ratio"] is not None})


def findings_text(rows: list[dict], probe: dict | None) -> str:
    base = next(r for r in rows if r["variant"] == "base")
    ratios = ratios_of(rows)
    lines = []

    mild = ratios[0]
    data = by_ratio(rows, mild, random=False)
    bio_rec = [r["bio_acc_recovery"] for r in data if r["bio_acc_recovery"] is not None]
    median = statistics.median(bio_rec) if bio_rec else None
    ok = median is not None and median >= 0.95
    lines.append(f"1. Moderate pruning keeps in-domain utility (median biomedical recovery of the data-driven "
                 f"methods at ratio {mild} >= 0.95): {'REPRODUCED' if ok else 'NOT reproduced'} "
                 f"(median {median if median is None else round(median, 3)}, range "
                 f"{min(bio_rec, default=0):.2f}-{max(bio_rec, default=0):.2f}).")

    extreme = ratios[-1]
    halluc = _mean([r["hallucination"] for r in by_ratio(rows, extreme, random=False)])
    ok = halluc is not None and base["hallucination"] is not None and halluc >= base["hallucination"] + 0.05
    lines.append(f"2. Extreme pruning raises the hallucination rate on made-up entities (data-driven mean at ratio "
                 f"{extreme} at least 5 points above base): {'REPRODUCED' if ok else 'NOT reproduced'} "
                 f"(base {_pct(base['hallucination'])}%, ratio {extreme}: {_pct(halluc)}%; per ratio: "
                 + ", ".join(f"{r}: {_pct(_mean([x['hallucination'] for x in by_ratio(rows, r, False)]))}%"
                             for r in ratios) + ").")

    faster = []
    for ratio in ratios:
        data = by_ratio(rows, ratio, random=False)
        bio, gen = _mean([r["bio_acc_recovery"] for r in data]), _mean([r["general_acc_recovery"] for r in data])
        faster.append((ratio, bio, gen))
    ok = all(b is not None and g is not None and g < b - 0.02 for _, b, g in faster)
    lines.append("3. Cross-domain (general) accuracy drops faster than in-domain (biomedical) under biomedical "
                 f"calibration (mean general recovery below biomedical at every ratio): "
                 f"{'REPRODUCED' if ok else 'NOT reproduced'} ("
                 + "; ".join(f"{r}: bio {b:.2f} vs general {g:.2f}" for r, b, g in faster if b is not None and g is not None)
                 + ").")

    beats = []
    for ratio in ratios:
        entry = (probe or {}).get("ratios", {}).get(ratio)
        if entry and entry["random"] and entry["methods"]:
            # many seeds, measured in-process on the answerable sets (same measure for both sides)
            rand = [b for b, _ in entry["random"]]
            scores = {m: b for m, (b, _) in entry["methods"].items()}
            source = f"in-process, {len(rand)} seeds"
        else:
            rand = [r["bio_acc"] for r in by_ratio(rows, ratio, random=True)]
            scores = {r["method"]: r["bio_acc"] for r in by_ratio(rows, ratio, random=False)}
            source = f"vLLM, {len(rand)} seed(s)"
        if not rand or not scores:
            continue
        bar = _mean(rand) + _sd(rand)
        winners = [m for m, b in scores.items() if b is not None and b > bar]
        beats.append((ratio, len(winners), len(scores), _mean(rand), _sd(rand), source))
    ok = bool(beats) and all(w > n / 2 for _, w, n, _, _, _ in beats)
    lines.append("4. Data-driven methods beat random (biomedical accuracy above random's mean + 1 sd, for most "
                 "methods at every ratio): " + ('REPRODUCED' if ok else 'NOT reproduced') + " ("
                 + "; ".join(f"{r}: {w}/{n} methods above random {_pct(m)}±{_pct(s)}% ({src})"
                             for r, w, n, m, s, src in beats) + ").")
    return "\n".join(lines)


def random_spread_rows(rows: list[dict], probe: dict | None) -> str:
    lines = ["| ratio | random on vLLM: seeds, bio %, general % | random in-process: seeds, bio % (min-max), "
             "general % (min-max) | data-driven in-process: bio / general % |", "|---|---|---|---|"]
    for ratio in ratios_of(rows):
        rand = by_ratio(rows, ratio, random=True)
        vllm = (f"{len(rand)}, {_pct(_mean([r['bio_acc'] for r in rand]))}±{_pct(_sd([r['bio_acc'] for r in rand]))}, "
                f"{_pct(_mean([r['general_acc'] for r in rand]))}±{_pct(_sd([r['general_acc'] for r in rand]))}")
        in_process, methods = "-", "-"
        entry = (probe or {}).get("ratios", {}).get(ratio)
        if entry:
            bio = [b for b, _ in entry["random"]]
            gen = [g for _, g in entry["random"]]
            in_process = (f"{len(bio)}, {_pct(_mean(bio))}±{_pct(_sd(bio))} ({_pct(min(bio))}-{_pct(max(bio))}), "
                          f"{_pct(_mean(gen))}±{_pct(_sd(gen))} ({_pct(min(gen))}-{_pct(max(gen))})")
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
