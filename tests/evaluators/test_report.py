"""`render_report` / `moeprune report` on synthetic cards of several methods and ratios."""

import base64
import re

from PIL import Image

from evaluators.card import write_card
from evaluators.report import render_report
from moeprune.cli import main


def metric(value, recovery=None):
    return {"value": value, "ci95": [max(0, value - 0.05), min(1, value + 0.05)], "recovery": recovery}


def card(variant, method=None, ratio=None, bio=0.8, general=0.7):
    def task(domain, accuracy, fake=False):
        metrics = {
            "exact_match": metric(accuracy, accuracy / 0.8),
            "hallucination_rate": metric(1 - accuracy),
            "ece": metric(0.1 + (1 - accuracy) / 4),
            "option_ll_accuracy": metric(accuracy),
        }
        if fake:
            metrics["refusal_rate"] = metric(accuracy)
        return {"domain": domain, "kind": "multiple_choice", "n": 150, "version": 1, "metrics": metrics}

    return {
        "schema_version": 1,
        "variant": variant,
        "model": variant,
        "model_dir": None,
        "pruning": {"method": method, "ratio": ratio, "experts_kept": 4, "experts_total": 8, "bytes_saved": 1000}
        if method
        else None,
        "base": "base",
        "tasks": {
            "bio_qa": task("biomedical", bio),
            "general_qa": task("general", general),
            "bio_fake": task("biomedical", bio - 0.1, fake=True),
        },
        "flags": {
            "low_confidence": {
                "signal": "mean_logprob",
                "direction": "below",
                "threshold": -1.2,
                "auroc": 0.8,
                "precision": 0.8,
                "recall": 0.4,
                "base_rate": 0.1,
            }
        },
        "flags_unavailable": {"base_disagreement": "no base endpoint given (--base-endpoint)"},
        "signal_quality": {"low_conf_share": {"direction": "above", "auroc": 0.7123, "n": 450}},
    }


def write_cards(tmp_path):
    specs = [
        ("base", None, None, 0.9, 0.85),
        ("reap-25", "reap", 0.25, 0.85, 0.7),
        ("reap-50", "reap", 0.5, 0.8, 0.5),
        ("freq-50", "frequency", 0.5, 0.7, 0.4),
    ]
    return [write_card(tmp_path / name, card(name, method, ratio, bio, gen)) for name, method, ratio, bio, gen in specs]


def distinct_colours(path) -> int:
    with Image.open(path) as image:
        image.load()
        return len(image.convert("RGB").getcolors(maxcolors=1 << 24))


def test_report_renders_html_and_non_trivial_pngs(tmp_path):
    cards = write_cards(tmp_path)
    index = render_report(cards, tmp_path / "report")
    page = index.read_text()
    assert page.startswith("<!doctype html>") and "</html>" in page
    for name in (
        "ratio_exact_match.png",
        "ratio_hallucination_rate.png",
        "ratio_refusal_rate.png",
        "domains.png",
        "utility_vs_reliability.png",
    ):
        png = tmp_path / "report" / name
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 300
        assert distinct_colours(png) > 20, name
    # Images are embedded, so the HTML file alone is the report.
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) >= 5 and base64.b64decode(embedded[0]).startswith(b"\x89PNG")
    for text in (
        "reap-50 (reap, 0.5)",
        "freq-50",
        "Recovery against the base",
        "low_confidence",
        "no base endpoint given",
    ):
        assert text in page
    assert "low_conf_share" in page and "0.712" in page
    assert "1.06" in page  # recovery of base exact match 0.85/0.8, formatted with 2 digits


def test_report_command_and_bad_card(tmp_path, capsys):
    cards = write_cards(tmp_path)
    assert main(["report", *map(str, cards), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").exists()
    (tmp_path / "broken.json").write_text("{")
    assert main(["report", str(tmp_path / "broken.json"), "--out", str(tmp_path / "r2")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
