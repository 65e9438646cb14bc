"""How often the free-text label (reference match, evaluators/answers.py) agrees with a person's.

    .venv/bin/python bench/free_text_labels.py sample CARDS_DIR [--n 90] [--sheet bench/free_text_handcheck.jsonl]
    .venv/bin/python bench/free_text_labels.py agree [--sheet bench/free_text_handcheck.jsonl] \
        [--md bench/free_text_labels.md]

`sample` draws a seeded sample of the free-text answers (tasks bio_open / general_open) of every variant in a
demo run's cards dir (`<cache>/runs/<model>/cards`), stratified by variant and by the automatic label, and
writes a sheet: question, reference, the reply, and an empty `hand_label` that a person fills in with
correct / wrong / abstained after reading the reply (without looking at `auto_label`: the sheet lists it last).
`agree` compares the two on the filled sheet: raw agreement with its Wilson 95% interval and Cohen's kappa,
on the three labels and on what the certificate uses (error or not, abstentions apart), and lists every
disagreement.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.tasks import open_question_tasks  # noqa: E402

OPEN_TASKS = tuple(open_question_tasks())
HAND_LABELS = ("correct", "wrong", "abstained")
SHEET = ROOT / "bench" / "free_text_handcheck.jsonl"


def free_text_answers(cards_dir: Path) -> list[dict]:
    rows = []
    for items in sorted(Path(cards_dir).glob("*/items.jsonl")):
        variant = items.parent.name
        for line in items.read_text().splitlines():
            record = json.loads(line)
            if record.get("task") in OPEN_TASKS and record.get("label"):
                rows.append({"variant": variant, **record})
    return rows


def coarse(label: str) -> str:
    """What the certificate counts: an error (wrong, unparsed), an abstention, or a right answer."""
    return {"unparsed": "wrong"}.get(label, label)


def questions() -> dict[tuple[str, str], str]:
    """(task, item id) -> the question asked (records keep the reply, not the prompt)."""
    from evaluators.tasks import shipped_tasks

    tasks = shipped_tasks()
    return {(name, item.id): item.fields["question"] for name in OPEN_TASKS for item in tasks[name].load()}


def sample(cards_dir: Path, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    asked = questions()
    strata: dict[tuple, list[dict]] = {}
    for row in free_text_answers(cards_dir):
        strata.setdefault((row["variant"], coarse(row["label"])), []).append(row)
    per = max(1, n // max(1, len(strata)))
    chosen = []
    for key in sorted(strata):
        group = sorted(strata[key], key=lambda r: (r["task"], r["id"]))
        chosen += rng.sample(group, min(per, len(group)))
    rng.shuffle(chosen)
    return [
        {
            "variant": r["variant"],
            "task": r["task"],
            "id": r["id"],
            "question": asked.get((r["task"], r["id"]), ""),
            "reference": r["target"],
            "reply": r.get("response") or "",
            "hand_label": None,
            "auto_label": coarse(r["label"]),
        }
        for r in chosen
    ]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def kappa(pairs: list[tuple[str, str]]) -> float | None:
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    left, right = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(left[c] * right[c] for c in set(left) | set(right)) / (n * n)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def agreement(rows: list[dict]) -> dict:
    filled = [r for r in rows if r.get("hand_label") in HAND_LABELS]
    if len(filled) < len(rows):
        missing = [r["id"] for r in rows if r.get("hand_label") not in HAND_LABELS][:5]
        raise SystemExit(f"{len(rows) - len(filled)} rows have no hand_label in {', '.join(HAND_LABELS)}: {missing}")
    three = [(r["hand_label"], r["auto_label"]) for r in filled]
    asserted = [(h, a) for h, a in three if h != "abstained" and a != "abstained"]
    out = {"n": len(filled), "by_variant": dict(Counter(r["variant"] for r in filled))}
    for name, pairs in (("three_labels", three), ("error_or_not_among_assertions", asserted)):
        agree = sum(a == b for a, b in pairs)
        out[name] = {"n": len(pairs), "agree": agree, "wilson95": wilson(agree, len(pairs)), "kappa": kappa(pairs)}
    out["disagreements"] = [r for r in filled if r["hand_label"] != r["auto_label"]]
    return out


def markdown(result: dict, sheet: Path) -> str:
    lines = [
        "| comparison | answers | agree | share (Wilson 95%) | Cohen's kappa |",
        "|---|---|---|---|---|",
    ]
    for name, label in (
        ("three_labels", "correct / wrong / abstained"),
        ("error_or_not_among_assertions", "error or not (both say it asserts something)"),
    ):
        entry = result[name]
        low, high = entry["wilson95"]
        share = entry["agree"] / entry["n"] if entry["n"] else float("nan")
        k = "-" if entry["kappa"] is None else f"{entry['kappa']:.2f}"
        lines.append(f"| {label} | {entry['n']} | {entry['agree']} | {share:.1%} ({low:.1%}-{high:.1%}) | {k} |")
    lines.append("")
    lines.append(
        f"Sheet: `{sheet.relative_to(ROOT) if sheet.is_relative_to(ROOT) else sheet.name}`; answers per "
        f"variant: {', '.join(f'{v} {n}' for v, n in sorted(result['by_variant'].items()))}."
    )
    if result["disagreements"]:
        lines.append("\nDisagreements (hand / automatic):\n")
        for r in result["disagreements"]:
            lines.append(
                f"- {r['variant']} {r['id']}: {r['question']!r} -> {r['reply']!r} "
                f"(reference {r['reference']!r}): {r['hand_label']} / {r['auto_label']}"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    take = sub.add_parser("sample")
    take.add_argument("cards_dir", type=Path)
    take.add_argument("--n", type=int, default=90)
    take.add_argument("--seed", type=int, default=0)
    take.add_argument("--sheet", type=Path, default=SHEET)
    check = sub.add_parser("agree")
    check.add_argument("--sheet", type=Path, default=SHEET)
    check.add_argument("--md", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "sample":
        rows = sample(args.cards_dir, args.n, args.seed)
        args.sheet.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"{len(rows)} answers to label by hand in {args.sheet}")
        return 0
    rows = [json.loads(line) for line in args.sheet.read_text().splitlines() if line.strip()]
    text = markdown(agreement(rows), args.sheet)
    print(text)
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
