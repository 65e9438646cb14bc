"""The demo cache's other entries: found, described, removed; the current model and live builds stay."""

from __future__ import annotations

import os
import subprocess
import sys

from demo.cache_entries import describe, other_entries, remove
from demo.command import tidy_cache


def populate(cache):
    for path in ("models/demo-current", "runs/demo-current/cards", "models/demo-old", "runs/demo-old/variants"):
        (cache / path).mkdir(parents=True)
    (cache / "models/demo-old/model.safetensors").write_bytes(b"x" * 3000)
    (cache / "runs/demo-old/variants/w").write_bytes(b"y" * 1000)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (cache / f"models/demo-current.building-{dead}").mkdir()  # a build whose process was killed
    (cache / f"models/demo-current.building-{os.getpid()}").mkdir()  # a build in progress (this process)
    return dead


def test_other_entries_are_other_keys_and_dead_builds_only(tmp_path):
    dead = populate(tmp_path)
    names = {entry.name for entry in other_entries(tmp_path, "demo-current")}
    assert names == {"demo-old", f"demo-current.building-{dead}"}  # "demo-old" twice: model and run
    assert len(other_entries(tmp_path, "demo-current")) == 3
    assert describe(other_entries(tmp_path, "demo-current")).startswith("3 other demo cache entries (3.91 KiB)")


def test_the_demo_says_what_else_is_cached_and_cleans_only_when_asked(tmp_path, capsys):
    populate(tmp_path)
    tidy_cache(tmp_path, "demo-current", clean=False)
    assert "--clean-cache removes them" in capsys.readouterr().out
    assert (tmp_path / "models/demo-old").exists()
    tidy_cache(tmp_path, "demo-current", clean=True)
    assert "removing 3 other demo cache entries" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "demo-current",
        f"demo-current.building-{os.getpid()}",
    ]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["demo-current"]
    tidy_cache(tmp_path, "demo-current", clean=False)
    assert capsys.readouterr().out == ""  # nothing else left: nothing said


def test_remove_of_nothing_and_a_missing_cache_are_fine(tmp_path):
    remove([])
    assert other_entries(tmp_path / "absent", "demo-current") == []
