"""The pieces of bench/stream_growth.py work (not a benchmark: nothing here is timed, and no size is asserted
beyond its sign): the slope and verdict arithmetic, the /proc reader, and the traced relay run end to end on
short streams."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from testkit.fast_engine import stream_chunks, stream_events, stream_tail, stream_tail_events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import stream_growth  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def test_per_token_is_the_slope_between_the_first_and_the_last_token():
    assert stream_growth.per_token(1000, 1000 + 350 * 1999, 2000) == 350
    with pytest.raises(ValueError):
        stream_growth.per_token(0, 10, 1)


def test_the_verdict_tells_constant_from_per_token_from_growing_and_names_a_late_rise():
    assert stream_growth.growth_verdict({500: [3.0, 0.0], 2000: [1.0, 0.5]}, 0).startswith("O(1),")
    steady = stream_growth.growth_verdict({500: [358.0, 358.0, 359.0], 2000: [346.0, 346.0, 347.0]}, 200)
    assert steady == "O(tokens), no RSS growth over the later rounds"
    growing = stream_growth.growth_verdict({500: [100.0], 2000: [400.0]}, 4096)
    assert growing == "growing, RSS still grew 4096 KiB over the later rounds"
    # Constant costs spread over more tokens: the amount per token falls with the length, it does not grow.
    assert stream_growth.growth_verdict({500: [40.0], 2000: [20.0]}, 0).startswith("O(tokens),")
    # The answer's own characters are taken off first.
    spread = stream_growth.growth_verdict({500: [21.2], 2000: [9.8]}, 0, inherent=5.6)
    assert spread.startswith("O(1) besides the answer's characters (5.6 B per token),")


def test_late_growth_compares_medians_of_the_second_and_the_last_quarter():
    readings = (70000, 74000, 77000, 77100, 79900, 77200, 77300, 77500)  # one reading at an overlap peak
    rows = [{"VmRSS": rss} for rss in readings]
    assert stream_growth.late_growth(rows) == 77500 - 77100
    with pytest.raises(ValueError):
        stream_growth.late_growth(rows[:3])


def test_memory_is_read_from_proc():
    memory = stream_growth.memory_kib(os.getpid())
    assert set(memory) == {"VmRSS", "VmHWM"} and 0 < memory["VmRSS"] <= memory["VmHWM"]


def test_the_stub_frames_the_same_events_it_hands_out():
    assert b"".join(stream_chunks("m", 3)) == b"".join(
        b"%x\r\n%s\r\n" % (len(e) + 8, b"data: " + e + b"\n\n") for e in stream_events("m", 3)
    )
    assert stream_tail("m", 3).endswith(b"0\r\n\r\n") and stream_tail_events("m", 3)[-1] == b"[DONE]"


def test_the_traced_relay_runs_streams_to_their_end_and_finds_what_they_hold():
    result = stream_growth.in_process(1, lengths=(20, 60))
    assert [stream["tokens"] for stream in result["streams"]] == [20, 60]
    # A stream holds its answer's characters until it ends (the token trace keeps no per-token lists any more).
    assert all(stream["held_at_last_token"] > 0 and stream["answer_bytes"] > 0 for stream in result["streams"])
    assert result["attribution"] and all(":" in line["line"] for line in result["attribution"])
    assert stream_growth.answer_bytes_per_token(result["streams"]) > 0
