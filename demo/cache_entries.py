"""The demo cache's other entries: models (and their runs) of other recipes or seeds, and leftovers of
builds that were killed. A new recipe gets a new key, so an upgrade leaves the old model behind; the
demo says so with the size, and `moeprune demo --clean-cache` removes them.

Layout: `models/demo-<key>` (finished models), `models/demo-<key>.building-<pid>` (a build in progress,
or one whose process was killed), `runs/demo-<key>` (variants, cards and calibration of that model).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                pass
    return total


def _building_pid(name: str) -> int | None:
    _, sep, pid = name.rpartition(".building-")
    return int(pid) if sep and pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def other_entries(cache: Path, keep: str) -> list[Path]:
    """Every cache directory that is not model `keep` (e.g. "demo-7fed...") or its run, and not a build
    in progress: other keys' models and runs, and builds whose process is gone."""
    found = []
    for kind in ("models", "runs"):
        folder = Path(cache) / kind
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if not entry.is_dir() or not entry.name.startswith("demo-") or entry.name == keep:
                continue
            pid = _building_pid(entry.name)
            if pid is not None and _alive(pid):
                continue
            found.append(entry)
    return found


def describe(entries: list[Path]) -> str:
    from moeprune.units import human_bytes

    return (
        f"{len(entries)} other demo cache entr{'y' if len(entries) == 1 else 'ies'} "
        f"({human_bytes(sum(_size(e) for e in entries))})"
    )


def remove(entries: list[Path]) -> None:
    for entry in entries:
        shutil.rmtree(entry, ignore_errors=True)
