"""The card's reliability section on synthetic answers whose signals separate wrong from right."""

import json
import math
import random

import pytest

from evaluators.card import write_card
from evaluators.reliability_card import in_fit_half, labels_digest, record_key, reliability_section
from moeprune.formats.report_card import ReportCard
from moeprune.reliability.risk_model import RiskModel


def answers(n, error_rate=0.15, seed=1, domains=("in_domain", "cross_domain"), base=False):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        wrong = rng.random() < error_rate
        logprob = rng.gauss(-2.0 if wrong else -0.3, 0.5)
        signals = {"mean_logprob": logprob, "min_logprob": logprob - rng.random(), "mean_entropy": math.nan}
        if base:
            signals["base_mean_logprob"] = rng.gauss(-3.0 if wrong else -0.5, 1.0)
        out.append(
            {
                "task": "t",
                "id": f"i{i}",
                "label": "wrong" if wrong else "correct",
                "abstained": False,
                "gate_domain": domains[i % len(domains)],
                "signals": signals,
            }
        )
    return out


def section_of(records, **options):
    settings = {"alpha": 0.05, "delta": 0.05, "gate_sha256": "g" * 64, "gate_threshold": 0.5, **options}
    return reliability_section(records, resamples=200, **settings)


def test_separating_signals_certify_each_domain_with_coverage_and_intervals_around_the_estimate():
    section, per_record = section_of(answers(800))
    for name in ("in_domain", "cross_domain"):
        domain = section["domains"][name]
        certificate = domain["certificate"]
        assert certificate["status"] == "certified" and certificate["coverage"] > 0.5
        assert certificate["realised_error"] <= 0.05
        auroc = domain["quality"]["p_wrong"]["auroc"]
        assert auroc["value"] > 0.9 and auroc["ci95"][0] <= auroc["value"] <= auroc["ci95"][1]
        assert {"auroc", "auprc", "aurc"} <= set(domain["quality"]["mean_logprob"])
        assert "mean_entropy" not in domain["quality"]  # NaN everywhere: no such signal
        assert domain["ece"]["ci95"] is not None and domain["brier"]["value"] < 0.1
        assert domain["risk_coverage"][-1][0] == 1.0
    assert section["without_base_check"] is None and not section["base_check"] and section["base_check_off"]
    assert len(per_record) == 800


def test_the_curve_at_the_certified_threshold_is_what_the_certificate_reports():
    records = answers(800)
    section, per_record = section_of(records)
    certificate = section["domains"]["in_domain"]["certificate"]
    held = [
        per_record[record_key(r)] | {"wrong": r["label"] == "wrong"}
        for r in records
        if r["gate_domain"] == "in_domain" and not in_fit_half(r, 0)
    ]
    served = [h for h in held if not h["above_risk"]]  # moeprune.reliability.decision.decide, as the gateway
    assert len(served) == certificate["n_unflagged"] and len(served) / len(held) == certificate["coverage"]
    assert sum(h["wrong"] for h in served) == certificate["errors_unflagged"]


def test_p_wrong_of_an_answer_is_the_card_models_p_wrong_of_its_signals():
    records = answers(400)
    section, per_record = section_of(records)
    model = RiskModel.from_dict(json.loads(json.dumps(section["domains"]["in_domain"]["model"])))
    for record in records[:40]:
        if record["gate_domain"] == "in_domain":
            assert per_record[record_key(record)]["p_wrong"] == model.p_wrong(record["signals"])


def test_thin_or_one_class_domains_are_uncertified_with_a_reason_never_an_error():
    section, _ = section_of(answers(12))
    for domain in section["domains"].values():
        assert domain["certificate"]["status"] == "uncertified" and domain["certificate"]["reason"]
    all_right = [dict(r, label="correct") for r in answers(200)]
    section, per_record = section_of(all_right)
    reason = section["domains"]["in_domain"]["certificate"]["reason"]
    assert "only right answers" in reason and section["domains"]["in_domain"]["model"] is None and not per_record
    nothing_cross = section_of(answers(200, domains=("in_domain",)))[0]["domains"]["cross_domain"]
    assert nothing_cross["n"] == 0 and "no labelled answers" in nothing_cross["certificate"]["reason"]
    assert section_of([{"id": "s", "kind": "summary", "signals": {}}]) == (None, {})


def test_abstentions_are_counted_apart_and_unparsed_answers_as_errors():
    records = answers(400, domains=("all",))
    records[0].update(label="abstained", abstained=True)
    records[1].update(label="correct", abstained=True)  # a right refusal: still outside the population
    records[2].update(label="unparsed")
    section, _ = section_of(records, gate_sha256=None, gate_threshold=None)
    domain = section["domains"]["all"]
    assert list(section["domains"]) == ["all"]
    assert domain["n"] == 398 and domain["n_abstained"] == 2 and domain["n_unparsed"] == 1
    assert domain["n_wrong"] == sum(r["label"] in ("wrong", "unparsed") for r in records[2:])


def test_with_and_without_the_base_check_side_by_side_and_a_card_round_trip(tmp_path):
    records = answers(600, base=True)
    section, _ = section_of(records, weights_sha256="w" * 64)
    assert section["base_check"] and "base_check_off" not in section
    assert "base_mean_logprob" in section["domains"]["in_domain"]["model"]["features"]
    assert "base_mean_logprob" not in section["without_base_check"]["in_domain"]["model"]["features"]
    card = {"schema_version": 1, "variant": "v", "model": "m", "tasks": {}, "reliability": section}
    loaded = ReportCard.load(write_card(tmp_path, card))
    assert loaded.reliability.domains["in_domain"].certificate.status == "certified"
    assert loaded.reliability.labels_sha256 == labels_digest(records) and loaded.reliability.gate_threshold == 0.5
    assert loaded.reliability.without_base_check["cross_domain"].quality["p_wrong"]["auroc"].value > 0.5


def test_the_labels_digest_changes_with_any_label():
    records = answers(50)
    flipped = [dict(r) for r in records]
    flipped[3]["label"] = "correct" if records[3]["label"] == "wrong" else "wrong"
    assert labels_digest(records) != labels_digest(flipped)
    assert labels_digest(records) == labels_digest(list(reversed(records)))  # order does not matter


def test_bad_alpha_is_refused_by_the_certificate():
    with pytest.raises(ValueError, match="alpha"):
        section_of(answers(200), alpha=1.5)
