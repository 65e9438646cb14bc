"""PruneConfig is the one place of run_prune's options: `moeprune prune --help` is generated from it."""

import re

import pytest

from moeprune import cli
from moeprune.cli_config import cli_fields, flag_of, help_of
from moeprune.errors import UserError
from pruning.config import PruneConfig
from pruning.pipeline import run_prune


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)  # argparse wraps help text (at spaces and hyphens)


def test_prune_help_lists_every_option_with_its_description(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prune", "--help"])
    text = squeezed(capsys.readouterr().out)
    fields = cli_fields(PruneConfig)
    assert set(PruneConfig.model_fields) - set(fields) == {"progress"}  # the one option for Python callers only
    for name, field in fields.items():
        assert field.description, name
        assert squeezed(flag_of(name, field)) in text, name
        assert squeezed(help_of(field)) in text, name
    assert "--maskMASK.json" in text  # the flag's metavar, not MASK_FILE
    assert "--no-domain-gate" in text and "writenodomain_gate.json" in text


def test_renamed_and_inverted_flags_map_onto_the_fields():
    from moeprune.cli_config import model_from_namespace

    parser, module = cli.build_parser(["prune"])
    args = parser.parse_args(
        ["prune", "src", "--out", "o", "--mask", "m.json", "--no-domain-gate", "--calibration", "a.jsonl", "b.jsonl:4"]
    )
    config = model_from_namespace(PruneConfig, args)
    assert config == PruneConfig(mask_file="m.json", domain_gate=False, calibration=["a.jsonl", "b.jsonl:4"])
    defaults = model_from_namespace(PruneConfig, parser.parse_args(["prune", "src", "--out", "o"]))
    assert defaults == PruneConfig()


def test_a_wrong_option_type_is_a_user_error_before_anything_is_read(tmp_path):
    with pytest.raises(UserError, match="^samples: input should be a valid integer") as caught:
        run_prune(tmp_path / "absent", tmp_path / "out", method="random", ratio=0.5, samples="many")
    assert caught.value.param == "samples"
    with pytest.raises(TypeError, match="run_prune\\(\\) got an unexpected keyword argument 'mask'"):
        run_prune(tmp_path / "absent", tmp_path / "out", mask="m.json")


def test_a_config_and_keyword_options_combine(tiny_qwen3_moe, tmp_path):
    # The keyword options override the config's; the checks then run on the combination.
    with pytest.raises(UserError, match="drop method") as caught:
        run_prune(tiny_qwen3_moe, tmp_path / "out", PruneConfig(method="reap"), mask_file="m.json")
    assert caught.value.param == "method"
