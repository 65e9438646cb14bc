"""TESTING ONLY: tiny random MoE checkpoints for tests and benchmarks, built entirely offline.

`build_tiny_model("qwen3_moe", out_dir)` writes a `save_pretrained` checkpoint
(safetensors, config, a byte-level BPE tokenizer trained here with
`tokenizers`, and a chat template) that transformers and vLLM load unchanged.
Families are data: `TINY_CONFIGS` maps a model_type to the config keys that
make it tiny; adding a family is adding an entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from demo.tokenizer import train_tokenizer

# hidden 128 with 4 heads gives head_dim 32: the CPU attention kernels reject 16.
_COMMON = dict(
    hidden_size=128,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)

# model_type -> config overrides that make a tiny model of that family (8 experts, top-2).
# Where a family has a trap for pruners the tiny model reproduces it: nemotron_h's Mamba
# heads (A_log, D, dt_bias: [mamba_num_heads]) equal the expert count, deepseek_v3 has a
# dense first layer and grouped routing, qwen2_moe/qwen3_5_moe have a [1, H] shared-expert gate.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen3_moe": dict(
        _COMMON,
        head_dim=32,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        norm_topk_prob=True,
    ),
    "mixtral": dict(_COMMON, num_local_experts=8, num_experts_per_tok=2),
    "olmoe": dict(_COMMON, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False),
    "qwen2_moe": dict(
        _COMMON,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=96,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        norm_topk_prob=False,
    ),
    "gpt_oss": dict(_COMMON, head_dim=32, intermediate_size=64, num_local_experts=8, num_experts_per_tok=2),
    "nemotron_h": dict(
        _COMMON,
        head_dim=32,
        layers_block_type=["linear_attention", "moe", "full_attention", "moe"],
        mamba_num_heads=8,
        mamba_head_dim=32,
        n_groups=2,
        ssm_state_size=16,
        chunk_size=32,
        n_routed_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        moe_shared_expert_intermediate_size=96,
        n_group=1,
        topk_group=1,
    ),
    "deepseek_v3": dict(
        _COMMON,
        num_hidden_layers=3,
        num_key_value_heads=4,
        first_k_dense_replace=1,
        n_routed_experts=8,
        n_group=2,
        topk_group=1,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        n_shared_experts=1,
        # vLLM's CPU MLA kernel needs kv_lora_rank + qk_rope_head_dim == 576.
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        q_lora_rank=None,
        qk_nope_head_dim=32,
        v_head_dim=32,
        # transformers does not write these; vLLM needs them to use e_score_correction_bias.
        topk_method="noaux_tc",
        scoring_func="sigmoid",
    ),
    # Text-only Qwen3.5-MoE (Qwen3_5MoeForCausalLM). vLLM's gated-delta-net kernels need
    # linear-attention head dims of 128.
    "qwen3_5_moe_text": dict(
        _COMMON,
        head_dim=32,
        layer_types=["linear_attention", "full_attention"],
        linear_key_head_dim=128,
        linear_value_head_dim=128,
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=96,
    ),
}
# The VL layout (Qwen3_5MoeForConditionalGeneration, as Qwen3.6-35B-A3B ships): the same text
# model nested under text_config, plus a one-block vision tower.
TINY_CONFIGS["qwen3_5_moe"] = dict(
    text_config=TINY_CONFIGS["qwen3_5_moe_text"],
    vision_config=dict(
        depth=1,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=128,
        patch_size=16,
        num_position_embeddings=64,
    ),
    tie_word_embeddings=False,
)
# Families whose checkpoints need another auto class than AutoModelForCausalLM.
AUTO_CLASSES: dict[str, str] = {"qwen3_5_moe": "AutoModelForImageTextToText"}


def auto_model_class(model_type: str):
    """The transformers auto class that loads a whole checkpoint of `model_type`."""
    import transformers

    return getattr(transformers, AUTO_CLASSES.get(model_type, "AutoModelForCausalLM"))


def build_tiny_model(
    model_type: str, out_dir: str | Path, seed: int = 0, dtype: str = "float32", max_shard_size: str | None = None
) -> Path:
    """Build a tiny random model of `model_type`, save it with a tokenizer, return the dir.

    `max_shard_size` (e.g. "400KB") saves several shards plus an index, like real checkpoints.
    """
    import torch
    from transformers import AutoConfig, GenerationConfig

    if model_type not in TINY_CONFIGS:
        from moeprune.errors import UserError

        raise UserError(f"no tiny config for model_type {model_type!r}; known: {', '.join(sorted(TINY_CONFIGS))}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out)
    token_ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    overrides = dict(TINY_CONFIGS[model_type])
    if "text_config" in overrides:
        # Multimodal placeholder ids get 4 rows past the tokenizer's vocabulary, so that no
        # text token is ever taken for an image; the tiny tests never send images.
        first = len(tokenizer)
        token_ids["vocab_size"] = first + 4
        overrides["text_config"] = dict(overrides["text_config"], **token_ids)
        overrides.update(
            image_token_id=first,
            video_token_id=first + 1,
            vision_start_token_id=first + 2,
            vision_end_token_id=first + 3,
        )
    else:
        overrides.update(token_ids)
    config = AutoConfig.for_model(model_type, **overrides)
    torch.manual_seed(seed)
    model = auto_model_class(model_type).from_config(config, dtype=getattr(torch, dtype))
    _spread_router_weights(model, seed)
    model.save_pretrained(str(out), **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id).save_pretrained(str(out))
    return out


def _spread_router_weights(model, seed: int) -> None:
    """Give routers larger random weights (and biases) so routing differs between tokens.

    With the default small init every router logit is near zero and all
    experts look alike, which makes pruning tests unable to tell methods apart.
    Router and selection biases (zero at init) get random values too, so a
    writer that slices them wrongly changes the logits.
    """
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    routers = ("mlp.gate.weight", "mixer.gate.weight", "block_sparse_moe.gate.weight", "mlp.router.weight")
    biases = ("mlp.router.bias", "gate.e_score_correction_bias")
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(routers):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5)
            elif name.endswith(biases):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
