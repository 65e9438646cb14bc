"""The README is a manual (issue 22): short, names the study, gives the two commands CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_names_the_study():
    assert len(README.splitlines()) < 400
    assert (
        "On the Utility and Factual Reliability of Pruned Mixture-of-Experts Models in the Biomedical Domain" in README
        and "2607.01444" in README
    )


def test_the_two_commands_are_the_ones_that_run():
    assert "bash scripts/setup.sh && .venv/bin/moeprune demo" in README
    assert "bash scripts/test.sh" in README
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()  # the test command is what CI runs


def test_every_local_link_resolves():
    for target in re.findall(r"\]\(((?:docs|bench)/[^)#\s]+)", README):
        assert (ROOT / target).exists(), target


def test_every_command_has_a_section():
    from moeprune.cli import COMMANDS

    for name in COMMANDS:
        assert f"### `moeprune {name}`" in README, name
    assert "## Reliability flags" in README and "reliability.p_wrong" in README
