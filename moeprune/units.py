"""Byte counts as people read them (binary units), for every command's output."""

from __future__ import annotations


def human_bytes(count: float, decimals: int = 2) -> str:
    """e.g. 512 B, 1.50 KiB, 3.20 GiB (GiB is the largest unit)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.{decimals}f} {unit}"
        count /= 1024
    return f"{count} B"
