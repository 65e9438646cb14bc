"""Averages of one metric across the tasks of a suite: macro (each task counts once) and micro (each item)."""

from __future__ import annotations


def macro_average(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def micro_average(values: list[float | None], counts: list[int]) -> float | None:
    """Item-weighted mean: for accuracy, all right answers over all items of the suite."""
    pairs = [(v, n) for v, n in zip(values, counts) if v is not None and n]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None
