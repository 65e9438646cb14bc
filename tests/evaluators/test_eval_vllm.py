"""End to end against a real vLLM CPU server serving the tiny random Qwen3-MoE as `tiny`."""

import json
import re

import httpx
import pytest
from PIL import Image

from moeprune.cli import main
from moeprune.formats.report_card import ReportCard
from tests.support.manifests import write_manifest

pytestmark = pytest.mark.slow

TASKS = "t_bio,t_general,t_fake,t_nota,t_sum"


def served_requests(url: str) -> float:
    """vLLM's own count of finished requests (any reason): proof of what reached the engine."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


@pytest.fixture(scope="module")
def evaluated(tiny_vllm_url, eval_sets, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-e2e")
    model_dir = root / "pruned"
    model_dir.mkdir()
    write_manifest(model_dir, {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}, bytes_before=900, bytes_after=500)
    args = [
        "eval",
        "--endpoint",
        tiny_vllm_url,
        "--model",
        "tiny",
        "--task-file",
        str(eval_sets / "tasks.yaml"),
        "--tasks",
        TASKS,
        "--base-endpoint",
        tiny_vllm_url,
        "--base-model",
        "tiny",
        "--base-variant",
        "base",
        "--variant",
        "tiny-reap-50",
        "--model-dir",
        str(model_dir),
        "--limit",
        "6",
        "--concurrency",
        "4",
        "--no-progress",
        "--out",
        str(root / "out"),
    ]
    before = served_requests(tiny_vllm_url)
    assert main(args) == 0
    first_served = served_requests(tiny_vllm_url) - before
    first_card = json.loads((root / "out" / "report_card.json").read_text())
    # The rerun must come entirely from the cache.
    assert main(args) == 0
    rerun_served = served_requests(tiny_vllm_url) - before - first_served
    return {
        "root": root,
        "card": first_card,
        "first_served": first_served,
        "rerun_served": rerun_served,
        "rerun_card": json.loads((root / "out" / "report_card.json").read_text()),
        "run_info": json.loads((root / "out" / "run_info.json").read_text()),
    }


def test_eval_writes_a_valid_report_card(evaluated):
    card = evaluated["card"]
    ReportCard.model_validate(card)  # the contract's strict model
    assert card["variant"] == "tiny-reap-50" and card["base"] == "base"
    assert card["pruning"] == {
        "method": "reap",
        "ratio": 0.5,
        "experts_kept": 4,
        "experts_total": 8,
        "experts_kept_total": 8,
        "experts_before_total": 16,
        "bytes_saved": 400,
    }
    assert set(card["tasks"]) == set(TASKS.split(","))
    bio = card["tasks"]["t_bio"]
    assert bio["n"] == 6 and bio["domain"] == "biomedical" and bio["kind"] == "multiple_choice"
    # A real vLLM returns logprobs: option likelihood and calibration are computed, not unavailable.
    for name in ("exact_match", "option_ll_accuracy", "ece", "brier", "hallucination_rate", "medhalt_score"):
        assert bio["metrics"][name]["value"] is not None, name
    # Base and variant are the same model here, so every recovery with a non-zero base is exactly 1.
    assert bio["metrics"]["option_ll_accuracy"]["recovery"] in (1.0, None)
    assert "refusal_rate" in card["tasks"]["t_fake"]["metrics"]
    assert "nota_accuracy" in card["tasks"]["t_nota"]["metrics"] and card["tasks"]["t_nota"]["n"] == 5
    assert card["tasks"]["t_sum"]["kind"] == "summarisation"
    assert card["tasks"]["t_sum"]["metrics"]["rouge_l"]["value"] is not None
    assert card["tasks"]["t_general"]["metrics"]["option_ll_accuracy"]["value"] is not None  # completions path
    # Every threshold flag is either calibrated or explained, never silently missing.
    flags = {**card["flags"], **card["flags_unavailable"]}
    assert set(flags) == {"low_confidence", "uncertain_span", "high_entropy", "base_disagreement"}
    # With a base, the variant's answers were scored under it (vLLM prompt logprobs).
    assert card["flags"]["base_disagreement"]["signal"] == "base_mean_logprob"


def test_the_card_certifies_or_says_why_with_the_base_check_on(evaluated):
    section = evaluated["card"]["reliability"]
    assert section["base_check"] and "base_check_off" not in section  # vLLM scored the answers under the base
    assert list(section["domains"]) == ["all"] and section["gate_sha256"] is None
    domain = section["domains"]["all"]
    assert domain["certificate"]["status"] == "uncertified" and domain["certificate"]["reason"]  # 29 answers
    assert set(section["without_base_check"]) == {"all"}
    records = [json.loads(line) for line in (evaluated["root"] / "out" / "items.jsonl").read_text().splitlines()]
    labelled = [r for r in records if "label" in r]
    assert len(labelled) == 6 + 6 + 6 + 5 and all(r["gate_domain"] == "all" for r in records)
    assert {r["domain"] for r in labelled} == {"biomedical", "general"}
    assert domain["n"] + domain["n_abstained"] == len(labelled)


def test_rerun_reuses_the_cache(evaluated):
    assert evaluated["first_served"] > 0
    assert evaluated["rerun_served"] == 0
    assert evaluated["run_info"]["requests_sent"] == 0 and evaluated["run_info"]["cache_hits"] > 0
    assert evaluated["rerun_card"] == evaluated["card"]


def test_items_file_records_every_answer(evaluated):
    lines = (evaluated["root"] / "out" / "items.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 6 + 6 + 6 + 5 + 3
    assert all("response" in r and "signals" in r for r in records)


def test_report_from_the_real_card(evaluated):
    out = evaluated["root"] / "report"
    assert main(["report", str(evaluated["root"] / "out" / "report_card.json"), "--out", str(out)]) == 0
    assert "tiny-reap-50" in (out / "index.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 4
    for png in pngs:
        with Image.open(png) as image:
            assert image.format == "PNG"
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 20


def test_shipped_suite_with_a_judge(tiny_vllm_url, tmp_path):
    """The shipped sets through --suite, and the pairwise judge plumbing on a real server.

    The tiny random model cannot write the judge's strict three-line format, so
    every verdict must be counted unparseable (never guessed into a side).
    """
    out = tmp_path / "suite"
    code = main(
        [
            "eval",
            "--endpoint",
            tiny_vllm_url,
            "--model",
            "tiny",
            "--suite",
            "all",
            "--limit",
            "2",
            "--base-endpoint",
            tiny_vllm_url,
            "--base-model",
            "tiny",
            "--judge-endpoint",
            tiny_vllm_url,
            "--judge-model",
            "tiny",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    card = json.loads((out / "report_card.json").read_text())
    ReportCard.model_validate(card)  # the contract's strict model
    assert set(card["tasks"]) == {"bio_qa", "bio_fake", "bio_nota", "general_qa", "general_fake", "general_nota"}
    for task in card["tasks"].values():
        metrics = task["metrics"]
        assert task["n"] == 2
        assert metrics["judge_unparseable_count"]["value"] == 2
        assert metrics["judge_unparseable_rate"]["value"] == 1.0
        assert metrics["judge_variant_more_hallucination"]["value"] is None  # nothing parsed: no share
    assert card["tasks"]["general_qa"]["domain"] == "general"
