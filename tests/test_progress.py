"""Progress: a bar on a terminal, plain whole lines every N steps in a log (issue 22)."""

from __future__ import annotations

import io

from moeprune.progress import LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_progress_is_plain_lines_every_n_steps():
    log = io.StringIO()
    with progress(2304, "training demo MoE", "step", stream=log) as bar:
        assert isinstance(bar, LineProgress)
        for step in range(2304):
            bar.update(1)
            bar.set_postfix(loss=f"{1 / (step + 1):.3f}")
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no redraws, no terminal codes
    lines = text.splitlines()
    assert 20 <= len(lines) <= 21  # one per 5%, and the end
    assert lines[0].startswith("training demo MoE: 115/2,304 step (5%)") and "left" in lines[0]
    assert lines[-1].startswith("training demo MoE: 2,304/2,304 step (100%)") and "loss=0.000" in lines[-1]


def test_a_given_step_and_the_last_count_are_said():
    log = io.StringIO()
    bar = progress(7, "pruning variants", "variant", stream=log, every=3)
    for _ in range(7):
        bar.update(1)
    bar.close()
    bar.close()
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "pruning variants: 3/7 variant (43%)",
        "pruning variants: 6/7 variant (86%)",
        "pruning variants: 7/7 variant (100%)",
    ]


def test_on_a_terminal_it_is_a_bar_and_disabled_it_says_nothing():
    from tqdm import tqdm

    bar = progress(10, "observing", "tok", stream=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    quiet = io.StringIO()
    with progress(10, "observing", "tok", stream=quiet, enabled=False) as bar:
        bar.update(10)
    with progress(10, "observing", "tok", stream=Terminal(), enabled=False) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""
