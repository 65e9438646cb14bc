"""p_wrong keeps the logistic model's order where the isotonic map is flat, and stays calibrated."""

from __future__ import annotations

import random

from moeprune.reliability.risk_model import TIE_BREAK, RiskModel, _interpolate, fit_risk_model


def fitted() -> tuple[RiskModel, list[dict]]:
    rng = random.Random(3)
    records, wrong = [], []
    for _ in range(400):
        is_wrong = rng.random() < 0.2
        records.append({"mean_logprob": rng.gauss(-2.0 if is_wrong else -0.3, 0.8)})
        wrong.append(is_wrong)
    return fit_risk_model(records, wrong, ["mean_logprob"]), records


def test_answers_the_isotonic_map_ties_keep_the_logistic_order():
    model, records = fitted()
    ordered = sorted(records, key=model.logit)
    calibrated = [
        _interpolate(1 / (1 + 2.718281828459045 ** -model.logit(r)), model.iso_x, model.iso_y) for r in ordered
    ]
    assert len(set(calibrated)) < len(calibrated) * 0.8  # the map alone ties many answers (the case at issue)
    scores = [model.p_wrong(r) for r in ordered]
    assert all(a < b for a, b in zip(scores, scores[1:]))  # every distinct logit keeps its place
    assert max(abs(s - c) for s, c in zip(scores, calibrated)) <= TIE_BREAK
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_the_tie_break_survives_the_cards_round_trip():
    model, records = fitted()
    again = RiskModel.from_dict(model.as_dict())
    assert [again.p_wrong(r) for r in records] == [model.p_wrong(r) for r in records]
