"""What the first run evaluates before serving, and the default vs full sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from demo.command import configure, methods_of
from demo.serving import DEFAULT_SERVED, choose_served
from demo.variants import ALL_METHODS, DEFAULT_METHODS, Variant
from moeprune.cli import main
from moeprune.errors import UserError


def sweep(*names):
    found = {"base": Variant("base", Path("b"))}
    for name in names:
        method, percent = name.rsplit("-", 1)
        found[name] = Variant(name, Path(name), method, int(percent) / 100)
    return found


def args(*argv):
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(list(argv))


def test_the_requested_variants_are_served_when_the_sweep_has_them():
    variants = sweep("random-25", "gate-25", "gate-50", "reap-25")
    assert choose_served(DEFAULT_SERVED, variants) == list(DEFAULT_SERVED)


def test_otherwise_the_mildest_data_driven_variants_are_served_and_random_last():
    assert choose_served(DEFAULT_SERVED, sweep("random-25", "reap-50", "ean-25")) == ["ean-25", "reap-50"]
    assert choose_served(["reap-50"], sweep("random-25", "reap-50")) == ["reap-50", "random-25"]
    assert choose_served(DEFAULT_SERVED, sweep()) == []


def test_default_sweep_is_smaller_than_full_and_the_two_flags_exclude_each_other(capsys):
    assert methods_of(args()) == list(DEFAULT_METHODS)
    assert methods_of(args("--full")) == list(ALL_METHODS) and len(DEFAULT_METHODS) < len(ALL_METHODS)
    assert methods_of(args("--methods", "reap")) == ["reap"]
    with pytest.raises(UserError):
        methods_of(args("--full", "--methods", "reap"))
    assert main(["demo", "--full", "--methods", "reap", "--no-serve"]) == 2
    assert "--full" in capsys.readouterr().err
