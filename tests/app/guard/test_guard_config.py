"""`guard:` and `telemetry:` in variants.yaml: bad settings fail at load time, naming the field and the fix."""

from __future__ import annotations

import pytest

from app.config.variants import load_config, parse_config
from app.guard.gates import load_gates
from moeprune.errors import UserError
from moeprune.formats.domain_gate import DomainGate


def variants(**pruned) -> dict:
    return {
        "variants": {
            "base": {"url": "http://127.0.0.1:9"},
            "pruned": {"url": "http://127.0.0.1:9", "base": "base", **pruned},
        }
    }


@pytest.mark.parametrize(
    "guard, message",
    [
        (
            {"domain_gate": {"fallback": "nowhere", "file": "g.json"}},
            "guard.domain_gate.fallback: unknown variant 'nowhere'",
        ),
        ({"domain_gate": {"fallback": "pruned", "file": "g.json"}}, "cannot be its own fallback"),
        ({"domain_gate": {"fallback": "base"}}, "a url: variant has no model dir"),
        ({"cascade": {"fallback": "base", "flags": ["wrong"]}}, "unknown flag(s) wrong; known: low_confidence"),
        ({"cascade": {"fallback": "base", "flags": []}}, "guard.cascade.flags"),
        ({"domain_gate": {"fallback": "base", "file": "g.json", "threshold": 2}}, "threshold"),
    ],
)
def test_bad_guards_are_refused_at_load(guard, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(variants(guard=guard))


def test_a_missing_gate_file_stops_the_start_naming_the_variant(tmp_path):
    config = parse_config(variants(guard={"domain_gate": {"fallback": "base", "file": str(tmp_path / "no.json")}}))
    with pytest.raises(UserError, match="variants.pruned.guard.domain_gate: domain gate .* does not exist"):
        load_gates(config)


def test_threshold_comes_from_the_config_then_the_card_then_the_file(tmp_path):
    gate = DomainGate([0.0] * 16, 0.0, threshold=0.5, buckets=16)
    gate.save(tmp_path / "domain_gate.json")
    card = tmp_path / "report_card.json"
    card.write_text(
        '{"schema_version": 1, "variant": "p", "model": "p", "tasks": {}, "domain_gate": {'
        '"in_domain": "biomedical", "n_in_domain": 10, "n_cross_domain": 10, "auroc": 0.99, '
        '"target_recall": 0.95, "threshold": 0.31, "recall": 0.95, "cross_domain_fallback_rate": 0.9}}'
    )
    (tmp_path / "variants.yaml").write_text(
        "variants:\n  base: {url: 'http://127.0.0.1:9'}\n"
        "  p: {url: 'http://127.0.0.1:9', report_card: report_card.json,\n"
        "      guard: {domain_gate: {fallback: base, file: domain_gate.json}}}\n"
        "  q: {url: 'http://127.0.0.1:9',\n"
        "      guard: {domain_gate: {fallback: base, file: domain_gate.json, threshold: 0.7}}}\n"
        "  r: {url: 'http://127.0.0.1:9', guard: {domain_gate: {fallback: base, file: domain_gate.json}}}\n"
    )
    gates = load_gates(load_config(tmp_path / "variants.yaml"))
    assert (gates["p"].threshold, gates["p"].threshold_source) == (0.31, "report_card")
    assert (gates["q"].threshold, gates["q"].threshold_source) == (0.7, "config")
    assert (gates["r"].threshold, gates["r"].threshold_source) == (0.5, "gate_file")


def test_the_gate_reads_only_what_the_user_wrote():
    from app.guard.prompt_text import prompt_text

    body = {
        "messages": [
            {"role": "system", "content": "You are a clinical assistant."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Which organ?"},
                    {"type": "image_url", "image_url": {"url": "http://x"}},
                ],
            },
            {"role": "assistant", "content": "The liver."},
            {"role": "user", "content": "And the dose?"},
        ]
    }
    assert prompt_text(body, chat=True) == "Which organ?\nAnd the dose?"
    assert prompt_text({"prompt": ["a", "b"]}, chat=False) == "a\nb"
    assert prompt_text({"prompt": [1, 2, 3]}, chat=False) == ""  # token ids: nothing to judge, the gate passes
