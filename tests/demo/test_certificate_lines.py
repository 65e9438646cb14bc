"""The demo prints what each served variant's flags promise, per gate domain, from its card (issue 26 item 9)."""

from __future__ import annotations

import json

from demo.summary import certificate_lines
from tests.support.report_cards import card, domain_entry


def test_each_domain_says_certified_with_its_coverage_and_bound_or_uncertified(tmp_path):
    cards = {}
    for name, domains in {
        "gate-25": {"in_domain": domain_entry(), "cross_domain": domain_entry("uncertified")},
        "plain": None,
    }.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(card(name, domains)))
        cards[name] = path
    lines = certificate_lines(cards)
    assert lines == [
        "gate-25 in_domain: certified: 80% of answers unflagged, wrong among them <= 3.7% (alpha 0.05, delta 0.05); "
        "p_wrong not fitted, 400 answers, no base check",
        "gate-25 cross_domain: uncertified: every answer flagged; p_wrong not fitted, 400 answers, no base check",
    ]  # a card without a reliability section prints nothing
