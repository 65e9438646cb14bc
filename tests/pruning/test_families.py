"""Family descriptors: counts, MoE layers, tensor matching by name, and the selection checks."""

import pytest

from moeprune.errors import UserError
from moeprune.formats.families import FAMILIES, family_for
from testkit.tiny_models import TINY_CONFIGS


def test_every_family_has_a_tiny_model_and_vice_versa():
    assert set(FAMILIES) == set(TINY_CONFIGS)


def test_unknown_model_type_names_the_supported_ones():
    with pytest.raises(UserError) as exc:
        family_for({"model_type": "llama"})
    for name in ("qwen3_moe", "gpt_oss", "nemotron_h", "qwen3_5_moe", "mixtral", "olmoe", "qwen2_moe", "deepseek_v3"):
        assert name in str(exc.value)


@pytest.mark.parametrize(
    ("config", "layers"),
    [
        ({"model_type": "qwen3_moe", "num_hidden_layers": 6, "decoder_sparse_step": 2, "mlp_only_layers": [3]}, [1, 5]),
        ({"model_type": "deepseek_v3", "num_hidden_layers": 5, "first_k_dense_replace": 3}, [3, 4]),
        (
            {"model_type": "nemotron_h", "layers_block_type": ["linear_attention", "moe", "full_attention", "moe"]},
            [1, 3],
        ),
        ({"model_type": "nemotron_h", "hybrid_override_pattern": "ME*-E"}, [1, 4]),
        ({"model_type": "qwen3_5_moe", "text_config": {"num_hidden_layers": 3, "num_experts": 8}}, [0, 1, 2]),
        ({"model_type": "mixtral", "num_hidden_layers": 2}, [0, 1]),
    ],
)
def test_moe_layers_come_from_the_config(config, layers):
    assert family_for(config).moe_layers(config) == layers


def test_vl_counts_live_in_text_config():
    config = {"model_type": "qwen3_5_moe", "text_config": {"num_experts": 256, "num_experts_per_tok": 8}}
    family = family_for(config)
    assert (family.num_experts(config), family.top_k(config)) == (256, 8)
    updated = family.with_expert_count(config, 128)
    assert updated["text_config"]["num_experts"] == 128 and "num_experts" not in updated
    assert config["text_config"]["num_experts"] == 256  # the input is not modified


def test_every_present_count_key_is_updated():
    config = {"model_type": "qwen3_moe", "num_experts": 8, "num_local_experts": 8}
    assert family_for(config).with_expert_count(config, 4) == {
        "model_type": "qwen3_moe",
        "num_experts": 4,
        "num_local_experts": 4,
    }


@pytest.mark.parametrize(
    ("model_type", "name", "kind"),
    [
        ("qwen3_moe", "model.layers.3.mlp.experts.5.up_proj.weight", "expert"),
        ("qwen3_moe", "model.layers.3.mlp.gate.weight", "dim0"),
        ("qwen2_moe", "model.layers.0.mlp.shared_expert_gate.weight", None),
        ("qwen2_moe", "model.layers.0.mlp.shared_expert.up_proj.weight", None),
        ("qwen3_5_moe", "model.language_model.layers.2.mlp.experts.0.gate_proj.weight", "expert"),
        ("qwen3_5_moe", "model.language_model.layers.2.mlp.shared_expert_gate.weight", None),
        ("mixtral", "model.layers.1.block_sparse_moe.experts.7.w2.weight", "expert"),
        ("mixtral", "model.layers.1.block_sparse_moe.gate.weight", "dim0"),
        ("gpt_oss", "model.layers.0.mlp.experts.gate_up_proj_bias", "dim0"),
        ("gpt_oss", "model.layers.0.mlp.experts.down_proj_blocks", "dim0"),
        ("gpt_oss", "model.layers.0.mlp.router.bias", "dim0"),
        ("gpt_oss", "model.layers.0.self_attn.sinks", None),
        ("nemotron_h", "backbone.layers.1.mixer.experts.3.down_proj.weight", "expert"),
        ("nemotron_h", "backbone.layers.1.mixer.gate.e_score_correction_bias", "dim0"),
        ("nemotron_h", "backbone.layers.0.mixer.A_log", None),
        ("nemotron_h", "backbone.layers.1.mixer.shared_experts.up_proj.weight", None),
        ("deepseek_v3", "model.layers.4.mlp.gate.e_score_correction_bias", "dim0"),
        ("deepseek_v3", "model.layers.4.mlp.experts.12.down_proj.weight_scale_inv", "expert"),
        ("deepseek_v3", "model.layers.0.mlp.gate_proj.weight", None),
        ("deepseek_v3", "model.layers.4.mlp.shared_experts.gate_proj.weight", None),
    ],
)
def test_expert_tensors_are_matched_by_name(model_type, name, kind):
    family = FAMILIES[model_type]
    found = "expert" if family.match_expert_tensor(name) else "dim0" if family.match_dim0_tensor(name) else None
    assert found == kind


DEEPSEEK = {
    "model_type": "deepseek_v3",
    "num_hidden_layers": 2,
    "first_k_dense_replace": 0,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "n_group": 2,
    "topk_group": 1,
}


@pytest.mark.parametrize(
    ("kept", "message"),
    [
        ({0: [0, 1, 4, 5], 1: [2, 3, 6, 7]}, None),
        ({0: [0, 1, 2, 4], 1: [2, 3, 6, 7]}, r"got \[3, 1\] per group"),
        ({0: [0, 4], 1: [2, 6]}, "each of the 2 groups must keep >= 2"),
        ({0: [0, 1, 4, 5]}, r"MoE layers of this deepseek_v3 checkpoint are \[0, 1\]"),
    ],
)
def test_grouped_routing_selection_checks(kept, message):
    family = family_for(DEEPSEEK)
    if message is None:
        family.validate_kept(DEEPSEEK, kept)
    else:
        with pytest.raises(UserError, match=message):
            family.validate_kept(DEEPSEEK, kept)
