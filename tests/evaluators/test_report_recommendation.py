"""The report's "which variant to ship" table and the base of every variant, from the cards alone."""

from __future__ import annotations

import pytest

from evaluators.report_data import base_name, recommendations, variants
from tests.evaluators.test_report import card


def members(with_base_field: bool = True):
    cards = [
        card("base", None, None, 0.9, 0.85),
        card("reap-25", "reap", 0.25, 0.85, 0.7),
        card("reap-50", "reap", 0.5, 0.8, 0.5),
        card("freq-50", "frequency", 0.5, 0.7, 0.4),
        card("random-50", "random", 0.5, 0.95, 0.9),
    ]
    for each in cards:
        if not with_base_field:
            each.pop("base")
    return variants(cards)


def test_best_data_driven_variant_per_ratio_with_recovery_intervals_and_costs():
    rows = {r["ratio"]: r for r in recommendations(members(), "biomedical", "general")}
    assert rows[0.25]["variant"] == "reap-25"
    assert rows[0.5]["variant"] == "reap-50"  # random is never recommended, however lucky
    value, low, high = rows[0.5]["in_domain"]
    assert value == pytest.approx(0.8 / 0.9) and low == pytest.approx(0.75 / 0.9) and high == pytest.approx(0.85 / 0.9)
    assert rows[0.5]["cross_domain"][0] == pytest.approx(0.5 / 0.85)
    # hallucination over every task that measures it: (0.2 + 0.5 + 0.3)/3 against the base's (0.1 + 0.15 + 0.2)/3
    assert rows[0.5]["hallucination_change"][0] == pytest.approx((1.0 - 0.45) / 3)
    assert rows[0.5]["bytes_saved"] == 1000


def test_every_variant_names_its_base_even_when_the_card_does_not():
    found = members(with_base_field=False)
    assert {v.name: base_name(v, found) for v in found} == {
        "base": "(is the base)",
        "freq-50": "base",
        "random-50": "base",
        "reap-25": "base",
        "reap-50": "base",
    }
