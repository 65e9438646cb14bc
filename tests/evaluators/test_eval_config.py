"""EvalConfig holds run_eval's options: `moeprune eval --help` shows each generated flag with its field's help."""

import re

import pytest

from evaluators.config import EvalConfig
from moeprune import cli
from moeprune.cli_config import cli_fields, flag_of, help_of
from moeprune.errors import UserError


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_eval_help_lists_every_generated_flag_with_its_description(capsys):
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    text = squeezed(capsys.readouterr().out)
    fields = cli_fields(EvalConfig)
    assert {"variant", "cache_path", "progress", "alpha", "split_seed"} <= set(fields)
    for name, field in fields.items():
        assert squeezed(flag_of(name, field)) in text and squeezed(help_of(field)) in text, name
    assert "--cacheCACHE" in text and "--no-progressnoprogressbars" in text


def test_eval_flags_map_onto_the_fields():
    from moeprune.cli_config import model_from_namespace

    parser, _ = cli.build_parser(["eval"])
    args = parser.parse_args(
        [
            "eval",
            "--endpoint",
            "u",
            "--model",
            "m",
            "--tasks",
            "t",
            "--out",
            "o",
            "--cache",
            "c.jsonl",
            "--no-progress",
            "--limit",
            "3",
            "--alpha",
            "0.1",
        ]
    )
    config = model_from_namespace(EvalConfig, args)
    assert config == EvalConfig(cache_path="c.jsonl", progress=False, limit=3, alpha=0.1)


def test_run_eval_refuses_a_wrong_option_type_naming_it(tmp_path):
    from evaluators.runner import run_eval

    with pytest.raises(UserError, match="^concurrency: input should be a valid integer") as caught:
        run_eval("http://127.0.0.1:9", "m", ["x"], tmp_path, concurrency="many")
    assert caught.value.param == "concurrency"
    with pytest.raises(TypeError, match="unexpected keyword argument 'cache'"):
        run_eval("http://127.0.0.1:9", "m", ["x"], tmp_path, cache="c.jsonl")
