"""Progress that suits where it goes: a live bar on a terminal, a plain line every N steps in a log.

A tqdm bar redraws itself with carriage returns; written to a file or a pipe
(CI, `nohup`, a container's log) those redraws never end a line, so a whole
training run became one 500 KB line (issue 22). `progress(...)` therefore
returns a tqdm bar only when the stream is a terminal, and otherwise a
`LineProgress` that prints one complete, greppable line every `every` steps
(default: every 5% of the total) and at the end.

Both have the part of tqdm's interface the project uses: `update(n)`,
`set_postfix(**values)`, `close()`, and use as a context manager.
"""

from __future__ import annotations

import sys
import time

DEFAULT_LINES = 20  # lines per run when the caller gives no `every`: one per 5%


def _seconds(value: float) -> str:
    value = round(value)
    return f"{value}s" if value < 60 else f"{value // 60}m{value % 60:02d}s"


class LineProgress:
    """Plain progress lines: `desc: 230/2304 step (10%), 41s elapsed, about 6m09s left, loss=0.512`."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        every: int | None = None,
        stream=None,
        enabled: bool = True,
    ):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.every = max(1, every if every is not None else round((total or 0) / DEFAULT_LINES) or 1)
        self.stream = stream if stream is not None else sys.stderr
        self.count, self.postfix, self.last_said = 0, "", 0
        self.started = time.monotonic()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.count - self.last_said >= self.every:
            self._say()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **values) -> None:
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def _say(self) -> None:
        self.last_said = self.count
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        parts = [f"{self.desc}: {self.count:,}"]
        if self.total:
            parts[0] += f"/{self.total:,} {self.unit} ({100 * self.count / self.total:.0f}%)"
            if 0 < self.count < self.total:
                left = elapsed / self.count * (self.total - self.count)
                parts.append(f"{_seconds(elapsed)} elapsed, about {_seconds(left)} left")
            else:
                parts.append(f"{_seconds(elapsed)} elapsed")
        else:
            parts[0] += f" {self.unit}"
            parts.append(f"{_seconds(elapsed)} elapsed")
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if not self.closed and self.count != self.last_said:
            self._say()  # the final count, whatever the step size
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


def progress(
    total: int | None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    every: int | None = None,
    stream=None,
    leave: bool = True,
):
    """A tqdm bar on a terminal, else plain lines every `every` steps; nothing at all when not `enabled`."""
    stream = stream if stream is not None else sys.stderr
    if enabled and is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=leave)
    return LineProgress(total, desc, unit, every=every, stream=stream, enabled=enabled)
