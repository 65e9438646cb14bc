"""Weighted, sticky assignment of a request to one arm (variant) of an experiment.

A sticky key (the experiment's header, else the request's `user`) is hashed
with the experiment name to a point in [0, 1); the arms, in the order the
variants file lists them, own consecutive slices of [0, 1) proportional to
their weights. The same key therefore always lands on the same arm (as long as
the weights do not change), different experiments split independently, and a
request with no key gets a random point.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping


def key_point(experiment: str, key: str) -> float:
    """A uniform point in [0, 1) determined by (experiment, key) alone."""
    digest = hashlib.sha256(f"{experiment}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm_at(arms: Mapping[str, float], point: float) -> str:
    """The arm whose slice of [0, 1) contains `point`; zero-weight arms own no slice."""
    total = sum(arms.values())
    edge = 0.0
    chosen = None
    for name, weight in arms.items():
        if weight <= 0:
            continue
        chosen = name
        edge += weight / total
        if point < edge:
            return name
    # Experiment.positive_total: weights are not all 0, so some arm was chosen.
    assert chosen is not None, "arms must have a positive total weight"
    return chosen  # float rounding can leave point a hair above the last edge


def choose_arm(experiment: str, arms: Mapping[str, float], key: str | None, rng: random.Random) -> str:
    point = key_point(experiment, key) if key else rng.random()
    return arm_at(arms, point)


def sticky_key(header_value: str | None, user: object) -> str | None:
    if header_value:
        return header_value
    if isinstance(user, str) and user:
        return user
    return None
