"""Tiny models of every family build, load cleanly, and agree with their descriptors."""

import json

import pytest

from moeprune.formats.checkpoint import Checkpoint
from testkit.tiny_models import auto_model_class
from tests.pruning.conftest import TINY_FAMILIES


@pytest.mark.parametrize("model_type", TINY_FAMILIES)
def test_tiny_model_loads_and_matches_its_family(model_type, tiny_model_factory):
    path = tiny_model_factory(model_type)
    checkpoint = Checkpoint.open(path)
    family, config = checkpoint.family, checkpoint.config
    assert config["model_type"] == model_type
    assert (family.num_experts(config), family.top_k(config)) == (8, 2)
    model, info = auto_model_class(model_type).from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    # The three views of "which layers are MoE" agree: config, modules in memory, tensors on disk.
    assert family.moe_layers(config) == sorted(family.moe_blocks(model)) == checkpoint.expert_layers()
    assert checkpoint.totals()["params"]["experts"] > 0
    for name in ("tokenizer.json", "chat_template.jinja", "generation_config.json"):
        assert (path / name).is_file()


def test_tiny_models_reproduce_the_traps_of_their_families(tiny_model_factory):
    nemotron = Checkpoint.open(tiny_model_factory("nemotron_h"))
    shapes = {t.name: t.shape for t in nemotron.tensors()}
    assert shapes["backbone.layers.0.mixer.A_log"] == (8,)  # Mamba heads == expert count
    deepseek = json.loads((tiny_model_factory("deepseek_v3") / "config.json").read_text())
    assert deepseek["first_k_dense_replace"] == 1 and deepseek["n_group"] == 2
    assert deepseek["kv_lora_rank"] + deepseek["qk_rope_head_dim"] == 576
    assert (deepseek["topk_method"], deepseek["scoring_func"]) == ("noaux_tc", "sigmoid")
