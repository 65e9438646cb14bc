"""Tiny random MoE checkpoints for tests and examples, built entirely offline.

`build_tiny_model("qwen3_moe", out_dir)` writes a `save_pretrained` checkpoint
(safetensors, config, a byte-level BPE tokenizer trained here with
`tokenizers`, and a chat template) that transformers and vLLM load unchanged.
Families are data: `TINY_CONFIGS` maps a model_type to the config keys that
make it tiny; adding a family is adding an entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# A plain chat template: role tags and an end-of-turn token, so chat requests
# work in vLLM and the tokens a template adds are visible in tests.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

_TOKENIZER_TEXT = """
Metformin is a biguanide used to treat type 2 diabetes. Aspirin inhibits cyclooxygenase.
The liver metabolises many drugs; the kidney filters the blood. Vitamin C deficiency causes scurvy.
Paris is the capital of France. The symbol of gold is Au. The violin is a string instrument.
Question: Which organ does hepatitis affect? Answer: the liver. I don't know the answer to that.
Mixture-of-experts models route every token to a few experts chosen by a learned router.
""".strip()

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
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen3_moe": dict(
        _COMMON, head_dim=32, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
        decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True,
    ),
    "mixtral": dict(_COMMON, num_local_experts=8, num_experts_per_tok=2),
    "olmoe": dict(_COMMON, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False),
    "qwen2_moe": dict(
        _COMMON, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
        shared_expert_intermediate_size=96, decoder_sparse_step=1, mlp_only_layers=[],
        norm_topk_prob=False,
    ),
}


def train_tokenizer(out_dir: str | Path, vocab_size: int = 512, texts: list[str] | None = None):
    """Train a byte-level BPE tokenizer locally and save it (with the chat template) to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts or _TOKENIZER_TEXT.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="<|end|>",
        bos_token=None,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(model_type: str, out_dir: str | Path, seed: int = 0, dtype: str = "float32") -> Path:
    """Build a tiny random model of `model_type`, save it with a tokenizer, return the dir."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    if model_type not in TINY_CONFIGS:
        from pruning.errors import UserError

        raise UserError(
            f"no tiny config for model_type {model_type!r}; known: {', '.join(sorted(TINY_CONFIGS))}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        **TINY_CONFIGS[model_type],
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    _spread_router_weights(model, seed)
    model.save_pretrained(str(out))
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(str(out))
    return out


def _spread_router_weights(model, seed: int) -> None:
    """Give routers larger random weights so routing differs between tokens.

    With the default small init every router logit is near zero and all
    experts look alike, which makes pruning tests unable to tell methods apart.
    """
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("mlp.gate.weight", "block_sparse_moe.gate.weight", "mlp.router.weight")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
