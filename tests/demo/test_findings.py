"""The demo's findings checks say REPRODUCED or NOT from the numbers, with the numbers."""

from __future__ import annotations

from bench.demo_findings import findings_text, flag_table
from app.demo.summary import markdown_table, with_recovery


def row(variant, method, ratio, bio, gen, halluc, flags=None):
    return {"variant": variant, "method": method, "ratio": ratio, "bio_acc": bio, "general_acc": gen,
            "refusal": 1 - halluc, "hallucination": halluc, "nota": 0.5, "bytes_saved": 0 if method is None else 10,
            "flags": flags or {}}


def study_like_rows():
    rows = [row("base", None, None, 0.9, 0.9, 0.1, {"low_confidence": 0.8})]
    for ratio, bio, gen, halluc in ((0.25, 0.89, 0.7, 0.1), (0.5, 0.85, 0.4, 0.2), (0.75, 0.6, 0.2, 0.4)):
        rows += [row(f"m{i}-{ratio}", f"m{i}", ratio, bio, gen, halluc) for i in range(3)]
        rows.append(row(f"random-{ratio}", "random", ratio, bio - 0.3, gen - 0.1, halluc))
    return with_recovery(rows)


def test_study_like_numbers_reproduce_every_finding():
    text = findings_text(study_like_rows(), None)
    assert text.count("REPRODUCED") == 4 and "NOT" not in text


def test_flat_numbers_reproduce_nothing():
    rows = [row("base", None, None, 0.9, 0.9, 0.1)]
    for ratio in (0.25, 0.5, 0.75):
        rows += [row(f"m-{ratio}", "m", ratio, 0.5, 0.9, 0.1), row(f"random-{ratio}", "random", ratio, 0.9, 0.9, 0.1)]
    text = findings_text(with_recovery(rows), None)
    assert text.count("NOT reproduced") == 4


def test_tables_show_recovery_and_flag_aurocs():
    rows = study_like_rows()
    table = markdown_table(rows)
    assert "| m0-0.25 | 89.0 | 70.0 |" in table and "0.99 | 0.78" in table
    assert "| base | 0.80 |" in flag_table(rows)
