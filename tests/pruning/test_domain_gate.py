"""The domain gate: deterministic fit, separation on the demo's sets, its home in the checkpoint, eval's section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evaluators.gate_quality import gate_quality
from evaluators.metrics.classification import auroc
from evaluators.tasks import shipped_tasks
from moeprune import cli
from moeprune.errors import UserError
from moeprune.formats.domain_gate import GATE_NAME, DomainGate, fit_gate, threshold_for_recall
from moeprune.formats.manifest import PruningManifest, verify
from moeprune.formats.report_card import ReportCard
from pruning.domain_gate_files import SHIPPED_REFERENCE, build_gate

SETS = Path(__file__).resolve().parents[2] / "evaluators" / "sets"


@pytest.fixture(scope="module")
def demo_calibration(tmp_path_factory) -> Path:
    """The demo's own biomedical calibration file (training chats, never evaluation items)."""
    from demo.calibration import write_calibration
    from demo.corpus import build_corpus

    return write_calibration(build_corpus(0), tmp_path_factory.mktemp("gate") / "calibration.jsonl")


def questions(name: str) -> list[str]:
    return [json.loads(line)["question"] for line in (SETS / name).read_text().splitlines() if line.strip()]


def test_the_same_texts_fit_the_same_file(demo_calibration, tmp_path):
    first = build_gate([demo_calibration]).save(tmp_path / "a.json")
    second = build_gate([demo_calibration]).save(tmp_path / "b.json")
    assert first.read_bytes() == second.read_bytes()
    loaded = DomainGate.load(first)
    text = "Which drug class does Mirfaortdustat belong to?"
    assert loaded.score(text) == build_gate([demo_calibration]).score(text)
    assert loaded.training["reference_files"] == ["(shipped general reference)"]


def test_the_gate_separates_the_demos_biomedical_and_general_questions(demo_calibration):
    # Fitted on calibration chats and the shipped general reference only; scored on held-out evaluation
    # questions (other templates, other entities). 0.95 is the bar for a useful gate: below it, a threshold
    # that keeps 95% of in-domain traffic on the pruned variant would let a large share of general traffic
    # through too. Measured: 0.999 (bench/guard_results.md).
    gate = build_gate([demo_calibration])
    for kind in ("qa", "nota", "fake"):
        bio, general = questions(f"biomedical_{kind}.jsonl"), questions(f"general_{kind}.jsonl")
        scores = [gate.score(q) for q in bio + general]
        assert auroc(scores, [True] * len(bio) + [False] * len(general)) > 0.95, kind


def test_a_gate_without_training_signal_separates_nothing():
    # The check above fails without the feature: the same fit on shuffled labels is near chance.
    bio, general = questions("biomedical_qa.jsonl"), questions("general_qa.jsonl")
    mixed = bio + general
    gate = fit_gate(mixed[0::2], mixed[1::2])
    scores = [gate.score(q) for q in bio + general]
    assert 0.3 < auroc(scores, [True] * len(bio) + [False] * len(general)) < 0.7


def test_threshold_for_recall_keeps_the_target_share():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    assert threshold_for_recall(scores, 0.8) == 0.2  # keeps 8 of 10
    assert sum(s >= threshold_for_recall(scores, 0.95) for s in scores) == 10
    with pytest.raises(UserError, match="gate recall"):
        threshold_for_recall(scores, 1.5)


def test_guard_build_writes_the_gate_and_verify_still_holds(pruned_factory, demo_calibration, tmp_path, capsys):
    _, pruned, _ = pruned_factory("qwen3_moe")
    variant = tmp_path / "variant"
    shutil.copytree(pruned, variant)
    assert cli.main(["guard", "build", str(variant), "--in-domain", str(demo_calibration)]) == 0
    assert GATE_NAME in capsys.readouterr().out
    assert GATE_NAME in PruningManifest.load(variant).files
    assert verify(variant) == []
    (variant / GATE_NAME).write_text((variant / GATE_NAME).read_text().replace('"bias":', '"bias": 1.0, "x":', 1))
    assert any(problem.startswith(f"changed: {GATE_NAME}") for problem in verify(variant))


def test_guard_build_bad_input_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["guard", "build", str(tmp_path / "nowhere"), "--in-domain", str(SHIPPED_REFERENCE)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert cli.main(["guard", "build", str(tmp_path), "--in-domain", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / GATE_NAME).write_text('{"schema": "something-else"}')
    with pytest.raises(UserError, match="not a domain gate"):
        DomainGate.load(tmp_path)


def test_prune_with_calibration_fits_the_gate(tiny_qwen3_moe, demo_calibration, tmp_path):
    from pruning.pipeline import run_prune

    out = run_prune(
        tiny_qwen3_moe,
        tmp_path / "out",
        method="frequency",
        ratio=0.5,
        calibration=[f"{demo_calibration}:16"],
        samples=16,
        max_tokens=32,
        progress=False,
    )
    assert DomainGate.load(out).training["in_domain_files"] == ["calibration.jsonl"]
    assert verify(out) == []
    assert GATE_NAME in PruningManifest.load(out).files  # hashed by the writer, with the rest


def test_a_bad_gate_reference_fails_the_prune_with_nothing_written(tiny_qwen3_moe, demo_calibration, tmp_path, capsys):
    """The gate is fitted before the checkpoint is written and published with it: an unreadable reference
    leaves no variant behind (before, the variant was published and then the gate step failed)."""
    reference = tmp_path / "general.jsonl"
    reference.write_text("{not json\n")
    out = tmp_path / "out"
    code = cli.main(
        [
            "prune",
            str(tiny_qwen3_moe),
            "--method",
            "frequency",
            "--ratio",
            "0.5",
            "--calibration",
            f"{demo_calibration}:16",
            "--max-tokens",
            "32",
            "--out",
            str(out),
            "--gate-reference",
            str(reference),
        ]
    )
    assert code == 2 and "general.jsonl" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_prune_cli_gate_flags(tiny_qwen3_moe, demo_calibration, tmp_path):
    reference = tmp_path / "general.jsonl"
    reference.write_text(
        "".join(json.dumps({"text": f"The train to city {k} leaves at {k} o'clock."}) + "\n" for k in range(40))
    )
    common = [
        "prune",
        str(tiny_qwen3_moe),
        "--method",
        "frequency",
        "--ratio",
        "0.5",
        "--calibration",
        f"{demo_calibration}:16",
        "--max-tokens",
        "32",
    ]
    assert cli.main(common + ["--out", str(tmp_path / "no-gate"), "--no-domain-gate"]) == 0
    assert not (tmp_path / "no-gate" / "domain_gate.json").exists()
    assert cli.main(common + ["--out", str(tmp_path / "own-ref"), "--gate-reference", str(reference)]) == 0
    assert DomainGate.load(tmp_path / "own-ref").training["reference_files"] == ["general.jsonl"]


def test_eval_card_gets_the_gates_auroc_and_threshold(demo_calibration, tmp_path):
    from evaluators.gate_quality import add_gate_quality

    gate = build_gate([demo_calibration])
    registry = shipped_tasks()
    tasks = [registry["bio_qa"], registry["general_qa"]]
    card = tmp_path / "report_card.json"
    card.write_text(json.dumps({"schema_version": 1, "variant": "v", "model": "v", "tasks": {}}))
    add_gate_quality(card, gate, tasks, 0.95)
    section = ReportCard.load(card).domain_gate
    assert section.auroc > 0.95 and section.recall >= 0.95 and section.n_in_domain == 150
    assert section == ReportCard.load(card).domain_gate  # as written, read back through the one reader
    assert section.threshold == gate_quality(gate, [(t, t.load()) for t in tasks], 0.95)["threshold"]


def test_eval_refuses_gate_recall_without_a_gate_before_any_request(capsys):
    code = cli.main(
        [
            "eval",
            "--endpoint",
            "http://127.0.0.1:9",
            "--model",
            "m",
            "--tasks",
            "bio_qa",
            "--out",
            "/tmp/unused-gate-eval",
            "--gate-recall",
            "0.95",
        ]
    )
    assert code == 2 and "--model-dir" in capsys.readouterr().err
