"""Metric and signal metadata live with their registration; reports ask the registry."""

import pytest

from evaluators.metric_registry import METRICS, higher_is_better
from evaluators.report_data import PLOTTED_METRICS
from evaluators.task_metrics import mc_metrics, summary_metrics
from moeprune.reliability.signals import FLAG_RULES, SIGNAL_DIRECTIONS


def record(kind, correct, abstained=False):
    return {
        "correct": correct,
        "abstained": abstained,
        "kind": kind,
        "gold": "A",
        "parsed_as": "letter",
        "option_probs": {"A": 0.6, "B": 0.4},
    }


def test_every_metric_the_aggregators_produce_is_registered_with_a_direction():
    records = [record("answerable", True), record("fake", False, True), record("nota", True), record("fct", False)]
    produced = set(mc_metrics(records)) | set(
        summary_metrics([{"response": "a b", "reference": "a c", "faithfulness": 0.5}])
    )
    assert produced <= set(METRICS)
    assert not higher_is_better("hallucination_rate") and not higher_is_better("ece")
    assert higher_is_better("exact_match") and higher_is_better("refusal_rate")
    assert set(PLOTTED_METRICS) <= set(METRICS) and "unparsed_rate" not in PLOTTED_METRICS
    with pytest.raises(KeyError, match="unknown metric 'made_up'"):
        higher_is_better("made_up")


def test_each_flag_takes_its_direction_from_its_signal():
    for name, rule in FLAG_RULES.items():
        assert rule.direction == SIGNAL_DIRECTIONS[rule.signal] in ("below", "above"), name
    assert FLAG_RULES["high_entropy"].raised(2.0, 1.5) and not FLAG_RULES["low_confidence"].raised(-0.5, -1.0)
