import pytest

from evaluators.card import flags_section, load_card, pruning_info, signal_quality, write_card
from evaluators.task_metrics import mc_metrics, summary_metrics, with_recovery
from moeprune.errors import UserError
from tests.support.manifests import write_manifest


def test_pruning_info_from_pruning_json(tmp_path):
    write_manifest(tmp_path, {0: [0, 2, 5, 7], 1: [1, 2, 3, 6]})
    assert pruning_info(tmp_path) == {
        "method": "reap",
        "ratio": 0.5,
        "experts_kept": 4,
        "experts_total": 8,
        "experts_kept_total": 8,
        "experts_before_total": 16,
        "bytes_saved": 400,
    }
    base = tmp_path / "base"
    base.mkdir()
    assert pruning_info(base) is None and pruning_info(None) is None
    with pytest.raises(UserError, match="not a directory"):
        pruning_info(tmp_path / "missing")


def record(correct, abstained=False, kind="answerable", probs=None, mean_logprob=-1.0):
    return {
        "correct": correct,
        "abstained": abstained,
        "kind": kind,
        "gold": "A",
        "parsed_as": "letter",
        "option_probs": probs,
        "signals": {
            "mean_logprob": mean_logprob,
            "min_logprob": mean_logprob,
            "mean_entropy": 0.5,
            "low_conf_share": 0.0,
        },
    }


def test_mc_metrics_by_hand_and_unavailable_without_option_probabilities():
    records = [
        record(True, probs={"A": 0.9, "B": 0.1}),
        record(False, probs={"A": 0.4, "B": 0.6}),
        record(False, abstained=True, kind="fake", probs={"A": 0.5, "B": 0.5}),
        record(True, kind="fake", probs={"A": 0.7, "B": 0.3}),
    ]
    metrics = mc_metrics(records)
    assert metrics["exact_match"]["value"] == 0.5
    assert metrics["hallucination_rate"]["value"] == 0.25  # only record 2 is wrong without abstaining
    assert metrics["refusal_rate"]["value"] == 0.5  # fake items: one abstained
    assert metrics["medhalt_score"]["value"] == pytest.approx((2 - 0.5) / 4)
    # Option argmax: A (right), B (wrong), A (tie -> first, right), A (right)
    assert metrics["option_ll_accuracy"]["value"] == 0.75
    # Brier on top-option confidence: (0.9-1)^2 + (0.6-0)^2 + (0.5-1)^2 + (0.7-1)^2 = 0.71; / 4
    assert metrics["brier"]["value"] == pytest.approx(0.1775)
    assert metrics["hallucination_rate_unanswerable"]["value"] == 0.0
    lo, hi = metrics["exact_match"]["ci95"]
    assert lo < 0.5 < hi
    no_probs = mc_metrics([record(True), record(False)])
    assert no_probs["ece"]["value"] is None and "logprobs" in no_probs["ece"]["unavailable"]
    assert no_probs["exact_match"]["value"] == 0.5


def test_recovery_is_variant_over_base():
    variant = {"exact_match": {"value": 0.6}, "ece": {"value": 0.1}, "x": {"value": None}}
    base = {"exact_match": {"value": 0.8}, "ece": {"value": 0.0}}
    out = with_recovery(variant, base)
    assert out["exact_match"]["recovery"] == pytest.approx(0.75)
    assert out["ece"]["recovery"] is None and out["x"]["recovery"] is None
    assert with_recovery({"a": {"value": 1.0}}, None)["a"]["recovery"] is None


def test_summary_metrics():
    records = [{"response": "the cat sat", "reference": "the cat sat"}, {"response": "a", "reference": "b"}]
    metrics = summary_metrics(records)
    assert metrics["rouge_l"]["value"] == 0.5 and metrics["token_f1"]["value"] == 0.5


def test_flags_section_calibrates_available_signals_and_explains_missing_ones():
    records = [record(i < 20, mean_logprob=(-0.2 if i < 20 else -3.0) - 0.01 * i) for i in range(40)]
    flags, missing = flags_section(records, 0.8, seed=0)
    assert flags["low_confidence"]["auroc"] == pytest.approx(1.0)
    assert flags["low_confidence"]["signal"] == "mean_logprob" and flags["low_confidence"]["direction"] == "below"
    assert -3.2 < flags["low_confidence"]["threshold"] < -0.4
    assert flags["low_confidence"]["base_rate"] == pytest.approx(0.5)
    assert "base_disagreement" in missing and "--base-endpoint" in missing["base_disagreement"]


def test_card_round_trip_and_bad_cards(tmp_path):
    path = write_card(tmp_path, {"schema_version": 1, "variant": "v", "model": "m", "tasks": {}, "flags": {}})
    assert load_card(path).variant == "v" and load_card(tmp_path).variant == "v"
    (tmp_path / "bad.json").write_text('{"schema_version": 1,\n')
    with pytest.raises(UserError, match="line 2"):
        load_card(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"schema_version": 7, "tasks": {}}')
    with pytest.raises(UserError, match="schema-version-1"):
        load_card(tmp_path / "other.json")


def test_signal_quality_covers_signals_without_a_flag():
    records = [record(i % 2 == 0) for i in range(6)]
    for r in records:
        r["signals"]["low_conf_share"] = 0.0 if r["correct"] else 0.5  # wrong answers: more low-confidence tokens
    quality = signal_quality(records)
    assert quality["low_conf_share"] == {"direction": "above", "auroc": 1.0, "n": 6}
    assert quality["mean_logprob"]["auroc"] == 0.5  # constant signal: chance
    assert "base_mean_logprob" not in quality


def test_flags_and_signal_quality_leave_abstentions_out_right_or_not():
    answered = [record(i < 20, mean_logprob=(-0.2 if i < 20 else -3.0) - 0.01 * i) for i in range(40)]
    # "I don't know" to a real question
    declined = [record(False, abstained=True, mean_logprob=-4.0) for _ in range(10)]
    refused = [record(True, abstained=True, kind="fake", mean_logprob=-4.0) for _ in range(10)]  # right refusals
    flags, _ = flags_section(answered + declined + refused, 0.8, seed=0)
    assert flags["low_confidence"]["n"] == 40 and flags["low_confidence"]["auroc"] == pytest.approx(1.0)
    assert signal_quality(answered + declined + refused)["mean_logprob"]["n"] == 40
