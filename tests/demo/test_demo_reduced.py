"""A reduced `moeprune demo` end to end: tiny training budget, one method, one ratio, real vLLM, no serving."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from moeprune.cli import main


@pytest.mark.slow
def test_reduced_demo_writes_cards_and_report_then_reuses_everything(tmp_path, capsys):
    args = [
        "demo",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
        "--train-steps",
        "20",
        "--methods",
        "frequency",
        "--ratios",
        "0.5",
        "--limit",
        "6",
        "--no-serve",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out

    out = tmp_path / "out"
    page = (out / "report" / "index.html").read_text()
    assert 'id="recommendation"' in page and "frequency-50" in page.split('id="recommendation"')[1][:3000]
    # every plot the page names exists beside it and is a real picture, not an empty canvas
    plots = set(re.findall(r"\(([a-z_]+\.png)\)</figcaption>", page))
    assert {"domains.png", "utility_vs_reliability.png", "ratio_exact_match.png"} <= plots
    for name in plots:
        assert (out / "report" / name).stat().st_size > 10_000, name
    results = json.loads((out / "results.json").read_text())
    assert len(results["weights_sha256"]) == 64 and results["model"] in str(list((tmp_path / "cache").glob("models/*")))
    rows = {row["variant"]: row for row in results["variants"]}
    assert set(rows) == {"base", "frequency-50"}
    assert rows["frequency-50"]["method"] == "frequency" and rows["frequency-50"]["ratio"] == 0.5
    assert rows["frequency-50"]["bytes_saved"] > 0 and rows["base"]["bytes_saved"] == 0
    cards = list((tmp_path / "cache" / "runs").glob("*/cards/*/report_card.json"))
    assert len(cards) == 2
    for card in cards:
        tasks = json.loads(card.read_text())["tasks"]
        assert {"bio_qa", "general_qa", "bio_fake", "general_fake", "bio_nota", "general_nota"} <= set(tasks)
    assert "trained in" in first and "| frequency-50 |" in first
    # --no-serve still leaves the file to serve the run with later (`moeprune serve --config`)
    served = yaml.safe_load((out / "variants.yaml").read_text())["variants"]
    assert "base" in served and f"moeprune serve --config {out / 'variants.yaml'}" in first

    started = time.monotonic()
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "reused from cache" in second
    assert time.monotonic() - started < 60  # nothing is trained, pruned or evaluated again


def test_bad_ratio_is_a_user_error(tmp_path, capsys):
    assert main(["demo", "--cache-dir", str(tmp_path), "--ratios", "1.5", "--no-serve"]) == 2
    assert "--ratios" in capsys.readouterr().err
