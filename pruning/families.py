"""MoE families as data: where each family keeps its experts, router and counts.

One `Family` per `model_type`. The pruner never branches on a family's name:
the observation pass, the selection checks and the streaming writer read
these fields. Adding a family is adding an entry (plus its tiny config in
`pruning/tiny.py` and a test).

Two views of the same model are described:
- on disk (checkpoint tensor names, matched by regex with named groups
  `layer` and, for per-expert tensors, `expert`), for the streaming writer;
- in memory (transformers modules), for the observation pass, which hooks the
  MoE block, reads the router's chosen experts and weights, and calls the
  fused experts module `experts(hidden, top_k_index, top_k_weights)` to get
  single-expert outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pruning.errors import UserError


@dataclass(frozen=True)
class Family:
    model_type: str
    # Config keys that hold the routed-expert count (every one present is updated on write).
    expert_count_keys: tuple[str, ...]
    top_k_keys: tuple[str, ...] = ("num_experts_per_tok",)
    # Nested sub-config holding the text model's keys (e.g. ("text_config",) for VL models).
    config_path: tuple[str, ...] = ()
    # On disk: per-expert tensors, e.g. "model.layers.3.mlp.experts.5.up_proj.weight".
    expert_tensor_re: str = r"^(?P<prefix>.*\.layers\.(?P<layer>\d+)\.mlp\.experts\.)(?P<expert>\d+)(?P<suffix>\..+)$"
    # On disk: tensors whose dim 0 is the expert index (fused experts, router rows, biases).
    expert_dim0_re: tuple[str, ...] = (r"^.*\.layers\.(?P<layer>\d+)\.mlp\.gate\.weight$",)
    # In memory: attribute path of the MoE block inside a decoder layer, and its parts.
    block_attr: str = "mlp"
    router_attr: str = "gate"
    experts_attr: str = "experts"
    # Grouped routing (DeepSeek-style): config keys of the group count and groups used per token.
    group_keys: tuple[str, str] | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def text_config(self, config: dict) -> dict:
        for key in self.config_path:
            config = config[key]
        return config

    def num_experts(self, config: dict) -> int:
        text = self.text_config(config)
        for key in self.expert_count_keys:
            if key in text:
                return int(text[key])
        raise UserError(
            f"{self.model_type}: config has none of {', '.join(self.expert_count_keys)}; "
            "is this a complete config.json?"
        )

    def top_k(self, config: dict) -> int:
        text = self.text_config(config)
        for key in self.top_k_keys:
            if key in text:
                return int(text[key])
        raise UserError(f"{self.model_type}: config has none of {', '.join(self.top_k_keys)}")

    def match_expert_tensor(self, name: str) -> re.Match | None:
        return re.match(self.expert_tensor_re, name)

    def match_dim0_tensor(self, name: str) -> re.Match | None:
        for pattern in self.expert_dim0_re:
            match = re.match(pattern, name)
            if match:
                return match
        return None


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in [
        Family(
            model_type="qwen3_moe",
            expert_count_keys=("num_experts", "num_local_experts"),
        ),
    ]
}


def family_for(config: dict) -> Family:
    """The family of a config.json dict; a clear error for an unsupported model_type."""
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise UserError(
            f"unsupported model_type {model_type!r}; supported MoE families: {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[model_type]
