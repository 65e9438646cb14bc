"""The served pair's and the base's cards ship with the demo weights and are used only where the stamp
(weights, sets, gate split) equals this run's (issue 22: the first run does not wait for them)."""

from __future__ import annotations

import json

from demo import evaluation, shipped, shipped_cards
from moeprune.formats.hashing import weights_digest
from moeprune.formats.report_card import ReportCard
from moeprune.reliability.signals import SIGNALS_REVISION


def test_shipped_cards_are_valid_carry_no_machine_paths_and_belong_to_the_shipped_weights():
    shipped_digest = weights_digest(shipped.SHIPPED_DIR)
    for name in shipped_cards.SHIPPED_NAMES:
        folder = shipped_cards.SHIPPED_DIR / name
        text = (folder / shipped_cards.CARD_FILE).read_text()
        card = ReportCard.model_validate_json(text)
        assert card.model_dir is None and card.endpoint is None
        assert "/root/" not in text and "/home/" not in text and "127.0.0.1" not in text
        assert card.reliability is not None and card.reliability.domains
        stamp = json.loads((folder / shipped_cards.STAMP_FILE).read_text())
        assert stamp["limit"] is None and stamp["tasks"]
        # measured on today's sets: a shipped card whose sets changed would never be installed
        assert stamp["tasks"] == evaluation._task_fingerprint(evaluation.SERVED_TASKS), f"refresh the {name} card"
        # measured with today's signals: a card from older signal definitions would never be installed
        assert stamp.get("signals_revision") == SIGNALS_REVISION, f"refresh the {name} card"
    base_stamp = json.loads((shipped_cards.SHIPPED_DIR / "base" / shipped_cards.STAMP_FILE).read_text())
    assert base_stamp["checkpoint"] == {"weights_sha256": shipped_digest}  # refresh the cards with the weights
    base_card = ReportCard.load(shipped_cards.SHIPPED_DIR / "base" / shipped_cards.CARD_FILE)
    assert base_card.reliability.weights_sha256 == shipped_digest


def _shipped(tmp_path, stamp):
    folder = tmp_path / "shipped" / "gate-50"
    folder.mkdir(parents=True)
    (folder / shipped_cards.CARD_FILE).write_text(
        json.dumps({"schema_version": 1, "variant": "gate-50", "model_dir": None, "endpoint": None})
    )
    (folder / shipped_cards.STAMP_FILE).write_text(json.dumps(stamp))
    return tmp_path / "shipped"


def test_a_matching_stamp_installs_the_card_with_this_machines_model_dir(tmp_path):
    stamp = {"checkpoint": {"model.safetensors": "ab" * 32}, "tasks": [{"name": "bio_qa"}], "limit": None}
    source = _shipped(tmp_path, stamp)
    out = tmp_path / "cards" / "gate-50"
    assert shipped_cards.install_shipped_card("gate-50", stamp, tmp_path / "variants" / "gate-50", out, source)
    installed = json.loads((out / shipped_cards.CARD_FILE).read_text())
    assert installed["model_dir"] == str(tmp_path / "variants" / "gate-50")
    assert json.loads((out / shipped_cards.STAMP_FILE).read_text()) == stamp


def test_other_weights_or_sets_evaluate_here(tmp_path):
    stamp = {"checkpoint": {"model.safetensors": "ab" * 32}, "tasks": [{"name": "bio_qa"}], "limit": None}
    source = _shipped(tmp_path, stamp)
    for other in ({**stamp, "checkpoint": {"model.safetensors": "cd" * 32}}, {**stamp, "limit": 6}):
        out = tmp_path / "cards" / "gate-50"
        assert not shipped_cards.install_shipped_card("gate-50", other, tmp_path, out, source)
        assert not out.exists()
    assert not shipped_cards.install_shipped_card("base", stamp, tmp_path, tmp_path / "cards" / "base", source)
