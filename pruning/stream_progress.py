"""What the layer-streamed pass tells the user while it runs: per-layer rate, time left, memory."""

from __future__ import annotations

import resource
import sys
import time

from moeprune.units import human_bytes


def human_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_device_bytes(device) -> int | None:
    """Peak CUDA memory allocated by torch on `device`, or None off the GPU."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))


class LayerProgress:
    """One line per decoder layer: tokens/s, read time and the estimate of the time left."""

    def __init__(self, layers: int, tokens: int, enabled: bool = True, stream=None):
        self.layers, self.tokens, self.enabled = layers, tokens, enabled
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.done = 0

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def layer_done(self, index: int, kind: str, load_seconds: float, run_seconds: float, read_bytes: int) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.layers - self.done)
        rate = self.tokens / run_seconds if run_seconds > 0 else float("inf")
        self.say(
            f"layer {index + 1}/{self.layers} ({kind}): {self.tokens:,} tokens at {rate:,.0f} tok/s, "
            f"read {human_bytes(read_bytes)} in {load_seconds:.1f}s; elapsed {human_seconds(elapsed)}, "
            f"about {human_seconds(left)} left"
        )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
