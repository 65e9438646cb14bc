"""The demo's domain gates learn the domain, not the prompt's form: a general reference in the calibration's forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo.calibration import write_calibration, write_gate_reference
from demo.corpus import build_corpus
from demo.variants import refit_gate
from evaluators.gate_domains import gate_text
from evaluators.gate_quality import gate_quality
from evaluators.task_kinds import task_prompt
from evaluators.tasks import resolve_tasks
from moeprune.formats.domain_gate import GATE_NAME, DomainGate
from pruning.domain_gate_files import attach_gate, build_gate


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("gate-reference")
    corpus = build_corpus(0)
    return write_calibration(corpus, work / "bio.jsonl"), write_gate_reference(corpus, work / "general.jsonl")


def in_domain_shares(gate: DomainGate) -> dict[str, float]:
    """Share of each shipped set in domain at the threshold the demo picks (95% of the utility sets' biomedical
    multiple-choice items in domain: demo.evaluation.domain_split)."""
    utility = [(task, task.load()) for task in resolve_tasks(["all"])]
    threshold = gate_quality(gate, utility, 0.95)["threshold"]
    shares = {}
    for task in resolve_tasks(["all", "reliability"]):
        scores = [gate.score(gate_text(task_prompt(task, item, []))) for item in task.load()]
        shares[task.name] = sum(s >= threshold for s in scores) / len(scores)
    return shares


def test_a_reference_in_the_calibrations_forms_keeps_plain_biomedical_questions_in_domain(inputs):
    calibration, reference = inputs
    shares = in_domain_shares(build_gate([calibration], [reference]))
    assert shares["bio_open"] >= 0.9  # the form apps send
    assert all(shares[name] == 0.0 for name in shares if name.startswith("general_"))
    # the shipped reference (plain questions only) taught the gate the multiple-choice form instead
    shipped = in_domain_shares(build_gate([calibration]))
    assert shipped["bio_open"] < 0.5


def test_a_cached_variant_gets_its_gate_refitted_once_and_keeps_its_weights(inputs, tmp_path):
    calibration, reference = inputs
    variant = tmp_path / "gate-50"
    variant.mkdir()
    (variant / "model.safetensors").write_bytes(b"weights")
    attach_gate(variant, build_gate([calibration]))  # what a prune without the reference wrote
    before = (variant / GATE_NAME).read_bytes()
    assert refit_gate(variant, calibration, reference) is True
    after = (variant / GATE_NAME).read_bytes()
    assert after != before and (variant / "model.safetensors").read_bytes() == b"weights"
    # (attach_gate re-records the gate's sha256 in pruning.json: tests/pruning/test_domain_gate.py)
    assert refit_gate(variant, calibration, reference) is False  # already fitted on these bytes
    assert (variant / GATE_NAME).read_bytes() == after


def test_the_card_says_which_in_domain_task_the_gate_sends_cross_domain(inputs, tmp_path):
    from evaluators.gate_quality import add_gate_quality, gate_warnings
    from moeprune.formats.report_card import ReportCard

    calibration, reference = inputs
    utility, extra = resolve_tasks(["all"]), resolve_tasks(["reliability"])
    for gate, warned in ((build_gate([calibration]), True), (build_gate([calibration], [reference]), False)):
        card = tmp_path / "report_card.json"
        card.write_text(json.dumps({"schema_version": 1, "variant": "v", "model": "v", "tasks": {}}))
        add_gate_quality(card, gate, utility, 0.95, also=extra)
        section = ReportCard.load(card).domain_gate
        assert set(section.per_task) == {t.name for t in utility + extra}
        warnings = gate_warnings(section)
        assert any("bio_open" in w for w in warnings) is warned, warnings
        assert not any("general_" in w for w in warnings)
