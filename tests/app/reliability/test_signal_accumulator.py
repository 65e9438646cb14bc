"""The signals from running totals equal the list-based signals bit for bit, and a stream's trace holds no tokens.

`compute_signals` used to average whole lists; it is now a loop over `SignalAccumulator`, which the
gateway's streams feed token by token. Flags and `p_wrong` compare these doubles with thresholds
calibrated on the old ones, so the old formula is frozen here and compared value for value (the
bits, the type and the key order), over many seeded random sequences with every odd case in them.
"""

from __future__ import annotations

import math
import random
import struct
import tracemalloc

import pytest

from moeprune.reliability import signals as signals_module
from moeprune.reliability.signals import (
    LOW_CONFIDENCE_LOGPROB,
    RunningSum,
    SignalAccumulator,
    compute_signals,
    top_k_entropy,
    top_margin,
)
from moeprune.reliability.token_trace import TokenTrace


def frozen_compute_signals(token_logprobs, top_logprobs=None) -> dict:
    """compute_signals as it was before the accumulator (lists, sum(), min()): the reference."""
    values = [lp for lp in token_logprobs if lp is not None and not math.isinf(lp)]
    nan = float("nan")
    if not values:
        return {
            "mean_logprob": nan,
            "min_logprob": nan,
            "mean_entropy": nan,
            "low_conf_share": nan,
            "mean_margin": nan,
            "answer_tokens": float(len(token_logprobs)),
        }
    signals = {
        "mean_logprob": sum(values) / len(values),
        "min_logprob": min(values),
        "low_conf_share": sum(lp < LOW_CONFIDENCE_LOGPROB for lp in values) / len(values),
        "mean_entropy": nan,
        "mean_margin": nan,
        "answer_tokens": float(len(token_logprobs)),
    }
    if top_logprobs:
        entropies = [top_k_entropy(list(tops)) for tops in top_logprobs if tops]
        entropies = [e for e in entropies if not math.isnan(e)]
        if entropies:
            signals["mean_entropy"] = sum(entropies) / len(entropies)
        margins = [top_margin(list(tops)) for tops in top_logprobs if tops and len(tops) > 1]
        if margins:
            signals["mean_margin"] = sum(margins) / len(margins)
    return signals


def bits(signals: dict) -> list:
    """Keys in order, each value's type and its IEEE-754 bytes (NaN included): equal means bit-identical."""
    return [(name, type(value), struct.pack("<d", value)) for name, value in signals.items()]


def random_logprob(rng: random.Random):
    kind = rng.random()
    if kind < 0.06:
        return None
    if kind < 0.09:
        return -math.inf
    if kind < 0.10:
        return math.inf
    if kind < 0.11:
        return math.nan
    if kind < 0.13:
        return rng.choice([0, -1, -3, 0.0, -0.0])
    if kind < 0.16:
        return -rng.uniform(0, 1e-12)  # tiny values next to large ones: where summation order shows
    if kind < 0.18:
        return -rng.uniform(1e3, 1e9)
    return -rng.expovariate(rng.choice([0.3, 1.0, 5.0]))


def random_tops(rng: random.Random) -> list:
    size = rng.choice([0, 0, 1, 2, 3, 5, 5, 5])  # empty and single-alternative tops included
    tops = [-rng.expovariate(0.7) for _ in range(size)]
    if tops and rng.random() < 0.05:
        tops[rng.randrange(size)] = rng.choice([-math.inf, math.nan, 0, -0.0])
    return tops


def random_sequence(rng: random.Random) -> tuple[list, list | None]:
    length = rng.choice([0, 1, 2, 3, 8, 30, 200])
    logprobs = [random_logprob(rng) for _ in range(length)]
    if rng.random() < 0.1:
        return logprobs, None
    tops = [random_tops(rng) for _ in range(length + rng.choice([0, 0, 0, -1, 1]) if length else 0)]
    return logprobs, tops


SEQUENCES = [random_sequence(random.Random(seed)) for seed in range(3000)]


def test_compute_signals_is_bit_identical_to_the_list_based_formula():
    for logprobs, tops in SEQUENCES:
        assert bits(compute_signals(logprobs, tops)) == bits(frozen_compute_signals(logprobs, tops)), (logprobs, tops)


def test_an_accumulator_fed_token_by_token_gives_the_same_bits():
    for logprobs, tops in SEQUENCES:
        if tops is not None and len(tops) != len(logprobs):
            continue
        accumulator = SignalAccumulator()
        for index, logprob in enumerate(logprobs):
            accumulator.add(logprob, None if tops is None else tops[index])
        assert bits(accumulator.signals()) == bits(frozen_compute_signals(logprobs, tops)), (logprobs, tops)


def test_the_odd_cases_by_name():
    nan = bits({"x": math.nan})[0][2]
    empty = compute_signals([])
    assert list(empty) == list(frozen_compute_signals([])) and empty["answer_tokens"] == 0.0
    only_unusable = compute_signals([None, -math.inf, math.inf], [[-1.0, -2.0]] * 3)
    assert only_unusable["answer_tokens"] == 3.0 and struct.pack("<d", only_unusable["mean_entropy"]) == nan
    # A leading NaN stays the minimum (min() never replaces it); a later one does not.
    assert math.isnan(compute_signals([math.nan, -9.0])["min_logprob"])
    assert compute_signals([-9.0, math.nan])["min_logprob"] == -9.0
    # Single alternatives count for the entropy (0 nats) but not the margin.
    single = compute_signals([-0.5], [[-0.5]])
    assert single["mean_entropy"] == 0 and math.isnan(single["mean_margin"])
    assert type(compute_signals([-1, -3])["min_logprob"]) is int  # min() returns the item itself


def test_the_running_sum_is_the_builtin_sum_of_this_interpreter():
    rng = random.Random(7)
    pool = [0.1, -0.0, 1e100, -1e100, 1.0, 3, True, 2**70, -(2**63), 2**63 - 1, 1e-300, -math.inf, math.nan]
    for _ in range(2000):
        values = [rng.choice(pool) if rng.random() < 0.3 else rng.uniform(-5, 5) for _ in range(rng.randrange(12))]
        running = RunningSum()
        for value in values:
            running.add(value)
        expected = sum(values)
        assert type(running.value()) is type(expected) and struct.pack("<d", running.value()) == struct.pack(
            "<d", expected
        ), values


def test_the_running_sum_follows_the_compensated_sum_of_python_3_12(monkeypatch):
    """Python 3.12's sum() of floats is compensated (Neumaier); a gateway on 3.12 must match it there."""
    monkeypatch.setattr(signals_module, "_COMPENSATED_FLOATS", True)
    tenths, cancelling = RunningSum(), RunningSum()
    for value in [0.1] * 10:
        tenths.add(value)
    for value in [1.0, 1e100, 1.0, -1e100]:
        cancelling.add(value)
    assert tenths.value() == 1.0 and cancelling.value() == 2.0  # a plain running total: 0.9999999999999999, 0.0
    monkeypatch.setattr(signals_module, "_COMPENSATED_FLOATS", False)
    plain = RunningSum()
    for value in [0.1] * 10:
        plain.add(value)
    assert plain.value() == sum([0.1] * 9, 0.1)


def chat_chunk(logprob, tops, content):
    return {"delta": {"content": content}, "logprobs": {"content": [{"logprob": logprob, "top_logprobs": tops}]}}


def test_a_trace_without_tokens_gives_the_same_signals_and_answer_as_one_with_them():
    rng = random.Random(11)
    for _ in range(200):
        kept, streamed = TokenTrace(), TokenTrace(keep_tokens=False)
        pieces = []
        for _ in range(rng.randrange(60)):
            tops = [{"logprob": lp} for lp in random_tops(rng)]
            # Any characters come back exactly: newlines untranslated, non-ASCII, a lone surrogate, NUL.
            piece = rng.choice(["", "a", " b", "\r\n", "\r", "é", "\U0001f600", "\ud83d", "\x00", None])
            pieces.append(piece or "")
            chunk = chat_chunk(random_logprob(rng), tops, piece)
            kept.add_choice(chunk, chat=True)
            streamed.add_choice(chunk, chat=True)
        assert bits(streamed.signals()) == bits(compute_signals(kept.token_logprobs, kept.top_logprobs))
        assert bits(kept.signals()) == bits(streamed.signals())
        assert streamed.answer == kept.answer == "".join(pieces)
    completion = {"text": "x", "logprobs": {"token_logprobs": [None, -0.5, -2.0], "top_logprobs": [None, {"a": -0.5}]}}
    kept, streamed = TokenTrace(), TokenTrace(keep_tokens=False)
    kept.add_choice(completion, chat=False)
    streamed.add_choice(completion, chat=False)
    assert bits(streamed.signals()) == bits(compute_signals([None, -0.5, -2.0], [[], [-0.5]]))
    assert bits(kept.signals()) == bits(streamed.signals())


def test_a_trace_without_tokens_says_so_when_its_tokens_are_asked_for():
    trace = TokenTrace(keep_tokens=False)
    trace.add_choice(chat_chunk(-0.5, [], "a"), chat=True)
    with pytest.raises(ValueError, match="keep_tokens=False"):
        _ = trace.token_logprobs
    with pytest.raises(ValueError, match="keep_tokens=False"):
        trace.generated_only(1)
    with pytest.raises(ValueError, match="starts empty"):
        TokenTrace([-1.0], keep_tokens=False)


def test_a_trace_without_tokens_holds_nothing_per_token():
    """What a streamed answer holds as it grows: its characters, nothing per token (tokens without text here)."""

    def held_after(tokens: int) -> int:
        chunk = chat_chunk(-0.25, [{"logprob": -0.25}, {"logprob": -2.0}], None)
        trace = TokenTrace(keep_tokens=False)
        tracemalloc.start()
        try:
            for _ in range(tokens):
                trace.add_choice(chunk, chat=True)
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    assert held_after(2000) - held_after(200) < 1800  # under a byte per token; a kept list costs over 60 B a token
