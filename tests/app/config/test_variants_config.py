"""variants.yaml validation: the issue's minimal shape works; errors name the file and the field."""

from __future__ import annotations

import textwrap

import pytest

from app.config.variants import load_config
from moeprune.errors import UserError

ISSUE_EXAMPLE = """
variants:
  base:
    model: /path/to/checkpoint          # managed: the gateway starts a vLLM server for it
  pruned-50:
    model: /path/to/pruned-checkpoint
    base: base                          # optional: the unpruned variant it was cut from
    report_card: /path/report_card.json # optional
    engine: {dtype: bfloat16, max_model_len: 1024, kv_cache_bytes: 268435456, args: [], env: {}}  # all optional
  remote:
    url: http://vllm-remote:8000         # an external vLLM server (e.g. a Kubernetes Service) instead of `model`
experiments:
  ab:
    arms: {base: 50, pruned-50: 50}
    sticky: x-session-id                # optional header name
"""


def write(tmp_path, text):
    path = tmp_path / "variants.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issue_example_loads_as_written(tmp_path):
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))
    assert config.variants["base"].managed and not config.variants["remote"].managed
    assert config.variants["pruned-50"].engine.kv_cache_bytes == 268435456
    assert config.variants["pruned-50"].base == "base"
    assert config.variants["remote"].url == "http://vllm-remote:8000"
    assert config.experiments["ab"].arms == {"base": 50, "pruned-50": 50}
    assert config.experiments["ab"].sticky == "x-session-id"


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "ckpt").mkdir()
    config = load_config(
        write(tmp_path, "variants: {a: {model: ckpt, report_card: card.json}, b: {model: Qwen/Qwen3-30B-A3B}}")
    )
    assert config.variants["a"].model == str(tmp_path / "ckpt")
    assert config.variants["b"].model == "Qwen/Qwen3-30B-A3B"  # not a local dir: a hub id, kept
    assert config.variants["a"].report_card == tmp_path / "card.json"


@pytest.mark.parametrize(
    "text, field",
    [
        ("variants: {a: {model: /m, engine: {kv_cache_bytes: -1}}}", "variants.a.engine.kv_cache_bytes"),
        ("variants: {a: {model: /m, url: 'http://x'}}", "variants.a"),
        ("variants: {a: {}}", "variants.a"),
        ("variants: {a: {model: /m, enigne: {}}}", "variants.a.enigne"),
        ("variants: {a: {url: 'ftp://x'}}", "variants.a.url"),
        ("variants: {a: {model: /m}}\nexperiments: {ab: {arms: {a: 1, b: 1}}}", "experiments.ab.arms.b"),
        ("variants: {a: {model: /m}}\nexperiments: {ab: {arms: {a: 0}}}", "experiments.ab.arms"),
        ("variants: {a: {model: /m, base: nope}}", "variants.a.base"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message and field in message


def test_unreadable_and_malformed_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(write(tmp_path, "variants: [unclosed"))
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(write(tmp_path, "- a list"))
