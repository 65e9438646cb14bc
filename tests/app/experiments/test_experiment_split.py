"""Weighted sticky split of experiments (pure logic, no vLLM)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from app.routing.experiments import choose_arm, sticky_key
from moeprune.reliability.intervals import wilson_interval  # the one implementation the gateway uses

ARMS = {"base": 70, "pruned-50": 30}
KEYS = [f"session-{i}" for i in range(2000)]


def test_70_30_split_over_2000_sticky_keys_is_within_tolerance():
    counts = Counter(choose_arm("ab", ARMS, key, random.Random(0)) for key in KEYS)
    share = counts["base"] / len(KEYS)
    # With an ideal hash each key is a Bernoulli(0.7) draw: sd of the share = sqrt(.7*.3/2000) = 0.0102.
    # 4.4 sd (+-0.045) gives a false-alarm rate below 1e-5 while still catching e.g. a 65/35 or 75/25 bug.
    sd = math.sqrt(0.7 * 0.3 / len(KEYS))
    assert abs(share - 0.7) < 4.4 * sd
    assert set(counts) == {"base", "pruned-50"}


def test_same_key_always_gets_the_same_arm():
    first = {key: choose_arm("ab", ARMS, key, random.Random(1)) for key in KEYS[:200]}
    again = {key: choose_arm("ab", ARMS, key, random.Random(2)) for key in KEYS[:200]}
    assert first == again


def test_experiments_split_independently():
    # The experiment name is part of the hash: one key's arms in two experiments are not locked together.
    arms = {"a": 50, "b": 50}
    together = sum(
        choose_arm("x", arms, key, random.Random()) == choose_arm("y", arms, key, random.Random()) for key in KEYS
    )
    assert 0.4 < together / len(KEYS) < 0.6


@pytest.mark.parametrize(
    "weights, only", [({"base": 0, "pruned": 100}, "pruned"), ({"base": 100, "pruned": 0}, "base")]
)
def test_zero_and_full_weights(weights, only):
    rng = random.Random(3)
    assert {choose_arm("ab", weights, key, rng) for key in KEYS[:500]} == {only}
    assert {choose_arm("ab", weights, None, rng) for _ in range(500)} == {only}


def test_without_a_key_requests_split_at_random_by_weight():
    rng = random.Random(4)
    counts = Counter(choose_arm("ab", ARMS, None, rng) for _ in range(2000))
    assert abs(counts["base"] / 2000 - 0.7) < 0.045


def test_sticky_key_prefers_header_then_user():
    assert sticky_key("h", "u") == "h"
    assert sticky_key(None, "u") == "u"
    assert sticky_key("", None) is None
    assert sticky_key(None, 42) is None


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) is None  # no trials: no interval (null in /v1/experiments)
    low, high = wilson_interval(0, 50)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.05 < high < 0.09
