"""The demo model's shape and training recipe, as data (it is hashed into the cache key).

Qwen3-MoE because vLLM serves it on CPU and the pruner supports it. head_dim
32 because vLLM's CPU attention rejects smaller heads. 16 experts, top-2:
enough experts that some can belong to one domain.

Experts are split into a biomedical group, a general group and a shared
group. Training adds a small "domain routing" penalty: the router probability
a token gives to the OTHER domain's group. Without it, a model this small
barely specialises by domain (measured in the feasibility run: total
variation between the domains' routing no better than at initialisation), so
pruning on biomedical data could not keep biomedical knowledge any better
than random pruning, and the demo would test nothing. With it, the question
the demo asks is the study's question given specialised experts: do the
pruning methods FIND the experts a domain needs from calibration data alone,
and what does losing the others cost? The shared group is unpenalised, as
real models' generalist experts are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DemoModelConfig:
    seed: int = 0
    corpus_seed: int = 0
    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32
    num_experts: int = 16
    top_k: int = 2
    expert_width: int = 96
    # expert groups: biomedical, general; the rest are shared
    biomedical_experts: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    general_experts: tuple[int, ...] = (7, 8, 9, 10, 11, 12, 13)
    domain_routing_weight: float = 0.3
    load_balance_weight: float = 0.01
    epochs: int = 64
    batch_size: int = 96
    learning_rate: float = 4e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_steps: int | None = None  # a cap for reduced runs (tests); None trains all epochs
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def cache_dict(self) -> dict:
        """What decides the trained weights: the recipe, and the numerics training runs under.

        Training pins its thread count and kernels (`demo.numerics`), so core
        count and CPU features no longer change the weights; what could still
        change them (library versions, a CPU without AVX2) is in the fingerprint.
        """
        from demo.numerics import numerics_fingerprint

        return {**self.as_dict(), "numerics": numerics_fingerprint()}

    def expert_groups(self) -> dict[str, tuple[int, ...]]:
        return {"biomedical": self.biomedical_experts, "general": self.general_experts}


def qwen3_moe_config(cfg: DemoModelConfig, tokenizer):
    from transformers import AutoConfig

    return AutoConfig.for_model(
        "qwen3_moe",
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.expert_width,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        num_experts=cfg.num_experts,
        num_experts_per_tok=cfg.top_k,
        moe_intermediate_size=cfg.expert_width,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        norm_topk_prob=True,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        router_aux_loss_coef=cfg.load_balance_weight,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
