"""moeprune/cli_config.py: argparse flags generated from a pydantic model, and the model rebuilt from them."""

import argparse
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from moeprune.cli_config import add_model_arguments, cli, model_from_namespace, validate_options
from moeprune.errors import UserError


class Toy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="who is greeted")
    count: int = Field(3, description="how many times (100% sure)")
    scale: float | None = Field(None, description="a scale factor", json_schema_extra=cli(group="numbers"))
    mode: Literal["fast", "slow"] = Field("fast", description="how to go", json_schema_extra=cli(group="numbers"))
    level: str = Field(
        "low", description="a level checked by the library", json_schema_extra=cli(choices=("low", "high"))
    )
    files: list[str | Path] = Field([], description="input files", json_schema_extra=cli(metavar="FILE"))
    verbose: bool = Field(False, description="say more")
    colour: bool = Field(True, description="colour the output", json_schema_extra=cli(help="plain output"))
    out_file: str | None = Field(
        None, description="where to write", json_schema_extra=cli(flag="--out", aliases=["-o"])
    )
    red: bool = Field(False, description="red", json_schema_extra=cli(exclusive="hue"))
    blue: bool = Field(False, description="blue", json_schema_extra=cli(exclusive="hue"))
    secret: str = Field("s", description="Python callers only", json_schema_extra=cli(exclude=True))


def parser():
    parser = argparse.ArgumentParser(prog="toy")
    add_model_arguments(parser, Toy)
    return parser


def test_round_trip_from_flags_to_the_model():
    args = parser().parse_args(
        [
            "--name",
            "ada",
            "--count",
            "5",
            "--scale",
            "0.5",
            "--mode",
            "slow",
            "--level",
            "high",
            "--files",
            "a",
            "b",
            "--verbose",
            "--no-colour",
            "-o",
            "x.txt",
        ]
    )
    assert vars(args)["count"] == 5 and vars(args)["scale"] == 0.5  # converted by argparse already
    toy = model_from_namespace(Toy, args)
    assert toy == Toy(
        name="ada",
        count=5,
        scale=0.5,
        mode="slow",
        level="high",
        files=["a", "b"],
        verbose=True,
        colour=False,
        out_file="x.txt",
    )


def test_defaults_come_from_the_fields():
    toy = model_from_namespace(Toy, parser().parse_args(["--name", "ada"]))
    assert toy == Toy(name="ada")
    assert model_from_namespace(Toy, parser().parse_args(["--name", "b"]), secret="t").secret == "t"


def test_choices_required_flags_and_exclusive_groups_are_enforced(capsys):
    for argv in (
        ["--name", "a", "--mode", "medium"],
        ["--name", "a", "--level", "mid"],
        [],
        ["--name", "a", "--red", "--blue"],
        ["--name", "a", "--secret", "x"],
    ):
        with pytest.raises(SystemExit):
            parser().parse_args(argv)
    err = capsys.readouterr().err
    assert "invalid choice: 'medium'" in err and "invalid choice: 'mid'" in err
    assert "the following arguments are required: --name" in err and "not allowed with argument --red" in err
    assert "unrecognized arguments: --secret" in err


def test_help_shows_each_flag_with_its_description_in_its_group():
    text = parser().format_help()
    for flag, words in [
        ("--name NAME", "who is greeted"),
        ("--count COUNT", "how many times (100% sure)"),
        ("--mode {fast,slow}", "how to go"),
        ("--level {low,high}", "a level checked"),
        ("--files FILE [FILE ...]", "input files"),
        ("--verbose", "say more"),
        ("--no-colour", "plain output"),
        ("--out OUT, -o OUT", "where to write"),
    ]:
        assert flag in text and words in text, flag
    numbers = text[text.index("\nnumbers:") :]  # the group's section, after the options
    assert "--scale SCALE" in numbers and "--mode {fast,slow}" in numbers and "--count" not in numbers
    assert "secret" not in text


def test_a_wrong_type_is_a_user_error_naming_the_parameter():
    with pytest.raises(UserError) as caught:
        validate_options(Toy, None, {"name": "a", "count": "many"}, caller="greet")
    assert caught.value.param == "count"
    assert str(caught.value) == (
        "count: input should be a valid integer, unable to parse string as an integer, got 'many'"
    )
    with pytest.raises(UserError, match=r"^files\[1\]: .*got 3$") as caught:
        validate_options(Toy, None, {"name": "a", "files": ["a", 3]}, caller="greet")
    assert caught.value.param == "files"
    with pytest.raises(UserError, match="^name: field required$"):
        validate_options(Toy, None, {}, caller="greet")


def test_an_unknown_option_is_a_type_error_and_options_override_a_config():
    with pytest.raises(TypeError, match="greet\\(\\) got an unexpected keyword argument 'colour_depth'"):
        validate_options(Toy, None, {"name": "a", "colour_depth": 8}, caller="greet")
    base = Toy(name="a", count=7)
    assert validate_options(Toy, base, {}, caller="greet") is base
    assert validate_options(Toy, base, {"verbose": True}, caller="greet") == Toy(name="a", count=7, verbose=True)
    with pytest.raises(TypeError, match="takes a Toy as config"):
        validate_options(Toy, {"name": "a"}, {}, caller="greet")


def test_cli_refuses_unknown_metadata_keys():
    with pytest.raises(TypeError, match="unknown cli\\(\\) keys: flags"):
        cli(flags="--x")
