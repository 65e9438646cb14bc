"""The keeper's stop handler is safe to run again inside itself (a signal arriving while it runs)."""

from __future__ import annotations

import signal
import sys
import threading

import pytest

from app.engines import reaper


@pytest.fixture
def sent(monkeypatch) -> list[tuple[int, tuple[int, ...]]]:
    """Signals the handler would send (recorded, not sent), and no real timer armed."""
    calls: list[tuple[int, tuple[int, ...]]] = []
    monkeypatch.setattr(reaper, "signal_group", lambda pgid, *signals: calls.append((pgid, signals)))
    monkeypatch.setattr(reaper.signal, "setitimer", lambda *args: calls.append((-1, args)))
    return calls


def test_a_second_stop_does_nothing(sent):
    stop = reaper.Stopper(4242, grace=2.0)
    stop()
    stop(signal.SIGTERM, None)  # as a handler: (signum, frame)
    assert sent == [(4242, (signal.SIGTERM, signal.SIGCONT)), (-1, (signal.ITIMER_REAL, 2.0))]


@pytest.mark.parametrize("at_line", range(12))
def test_a_signal_arriving_at_any_line_of_the_handler_does_not_block_it(sent, at_line):
    """Re-enter the handler at the `at_line`-th line it (or anything it calls) executes, as a signal arriving
    there would. The keeper's handler once set a threading.Event: re-entered inside Event.set(), the nested
    call waited for the Condition lock its own outer call held, forever."""
    stop = reaper.Stopper(4242, grace=2.0)
    lines = []

    def tracer(frame, event, arg):
        if event == "line":
            lines.append(frame.f_code.co_name)
            if len(lines) == at_line + 1:
                stop(signal.SIGTERM, None)  # a trace function is not traced itself: one nested call
        return tracer

    def run() -> None:
        sys.settrace(tracer)
        try:
            stop()
        finally:
            sys.settrace(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), f"the stop handler blocked when re-entered at line {at_line} ({lines[-1:]})"
    assert sent.count((-1, (signal.ITIMER_REAL, 2.0))) >= 1  # the SIGKILL timer is armed whatever the timing
