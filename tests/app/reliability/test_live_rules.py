"""The live fallback's rules without a gateway: who counts, how labels join, and how often it trips."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from app.reliability.live import Levels, LiveCertificates, ServedAnswer, UnknownCompletion
from app.reliability.live_bound import above_alpha, labels_to_recertify, within_alpha

CERTIFIED = SimpleNamespace(status="certified", threshold=0.2)


def answer(
    completion_id: str, flagged: bool = False, abstained: bool = False, p_wrong: float = 0.05, key_id: str | None = "k1"
) -> ServedAnswer:
    return ServedAnswer(completion_id, "gate-50", "in_domain", p_wrong, flagged, abstained, "c" * 64, key_id)


def test_only_unflagged_answers_that_assert_something_count():
    live = LiveCertificates()
    live.record_served(answer("unflagged"))
    live.record_served(answer("flagged", flagged=True))
    live.record_served(answer("abstained", abstained=True))
    for completion_id in ("unflagged", "flagged", "abstained"):
        live.record_outcome(completion_id, "k1", wrong=True)
    pair = live.pairs[("gate-50", "in_domain")]
    assert (pair.labelled, pair.wrong) == (1, 1)


def test_labels_join_only_for_the_receiving_key_and_the_latest_wins():
    live = LiveCertificates()
    live.record_served(answer("a"))
    live.record_served(answer("keyless", key_id=None))
    with pytest.raises(UnknownCompletion):
        live.record_outcome("a", "k2", wrong=True)
    with pytest.raises(UnknownCompletion):
        live.record_outcome("never", "k1", wrong=True)
    assert live.record_outcome("keyless", "anonymous", wrong=False).status == "new"
    assert [live.record_outcome("a", "k1", wrong=w).status for w in (False, False, True, False)] == [
        "new",
        "same",
        "revised",
        "revised",
    ]
    pair = live.pairs[("gate-50", "in_domain")]
    assert (pair.labelled, pair.wrong) == (2, 0)


def test_memory_is_bounded_by_count_and_age_and_forgotten_labels_leave_the_counts():
    live = LiveCertificates(max_answers=3, retention_s=60)
    for index in range(5):
        live.record_served(answer(f"id{index}"))
    assert list(live.served) == ["id2", "id3", "id4"]
    live.record_outcome("id2", "k1", wrong=False)
    live.served["id2"].served_at -= 120  # past retention
    with pytest.raises(UnknownCompletion):
        live.record_outcome("id2", "k1", wrong=True)
    assert live.pairs[("gate-50", "in_domain")].labelled == 0


def test_an_id_recorded_again_replaces_its_answer_without_forgetting_another():
    live = LiveCertificates(max_answers=3)
    for index in range(3):
        live.record_served(answer(f"id{index}"))
    live.record_outcome("id1", "k1", wrong=True)
    live.record_served(answer("id1", flagged=True))  # the later record of an id is the one rated
    assert list(live.served) == ["id0", "id2", "id1"] and live.served_answer("id1").flagged is True
    assert live.pairs[("gate-50", "in_domain")].labelled == 0  # its label went with the replaced answer
    assert live.served_answer("never") is None


def test_answers_served_during_a_fallback_count_when_the_certificate_alone_passes_them():
    live = LiveCertificates(levels={("gate-50", "in_domain"): Levels(0.05, 0.05, CERTIFIED)})
    for index in range(2):
        live.record_served(answer(f"bad{index}"))
        live.record_outcome(f"bad{index}", "k1", wrong=True)
    assert live.fallback_active("gate-50", "in_domain")
    live.record_served(answer("below", flagged=True, p_wrong=0.1))  # the fallback flagged it; the certificate would not
    live.record_served(answer("above", flagged=True, p_wrong=0.5))
    live.record_outcome("below", "k1", wrong=False)
    live.record_outcome("above", "k1", wrong=False)
    assert live.pairs[("gate-50", "in_domain")].labelled == 1


def test_the_trip_and_the_recertification_thresholds():
    assert not above_alpha(1, 1, 0.05, 0.05) and above_alpha(2, 2, 0.05, 0.05)
    assert above_alpha(30, 200, 0.05, 0.05) and not above_alpha(15, 200, 0.05, 0.05)
    needed = labels_to_recertify(0.05, 0.05)
    assert within_alpha(0, needed, 0.05, 0.05) and not within_alpha(0, needed - 1, 0.05, 0.05)


def test_checking_after_every_label_trips_falsely_at_most_delta_of_the_time():
    """True error exactly alpha, 600 labels, a look after each: trips in <= delta of 400 seeded runs."""
    alpha = delta = 0.05
    trips = 0
    for seed in range(400):
        rng = random.Random(seed)
        wrong = 0
        for n in range(1, 601):
            wrong += rng.random() < alpha
            if above_alpha(wrong, n, alpha, delta):
                trips += 1
                break
    assert trips / 400 <= delta
    # ...while a variant wrong 20% of the time is caught within 150 labels nearly always.
    caught = 0
    for seed in range(100):
        rng = random.Random(10_000 + seed)
        wrong = 0
        for n in range(1, 151):
            wrong += rng.random() < 0.2
            if above_alpha(wrong, n, alpha, delta):
                caught += 1
                break
    assert caught >= 95
