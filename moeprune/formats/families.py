"""MoE families as data: where each family keeps its experts, router and counts.

One `Family` per `model_type`. The pruner never branches on a family's name:
the observation pass, the selection checks and the streaming writer read
these fields. Adding a family is adding an entry here (plus its tiny config
in `testkit/tiny_models.py`, which the family tests pick up automatically).

Two views of the same model are described:
- on disk (checkpoint tensor names, matched by regex with named groups
  `layer` and, for per-expert tensors, `expert`), for the streaming writer.
  Tensors are matched by NAME only, never by a dimension that happens to
  equal the expert count (Mamba's `A_log`/`D`/`dt_bias` are [heads], which can
  equal E; Qwen's `shared_expert_gate.weight` is [1, H] and not per expert);
- in memory (transformers modules), for the observation pass, which hooks the
  MoE block, reads the router's chosen experts and weights, and calls the
  fused experts module `experts(hidden, top_k_index, top_k_weights)` to get
  single-expert outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from moeprune.errors import UserError

# Fused expert tensors some tools write in transformers' in-memory layout
# ([E, 2I, H] / [E, H, I], no ".weight"): sliced along dim 0 like router rows.
_FUSED = r"experts\.(?:gate_up_proj|down_proj|up_proj)"


def _per_expert(block: str) -> str:
    return rf"^(?P<prefix>.*\.layers\.(?P<layer>\d+)\.{block}\.experts\.)(?P<expert>\d+)(?P<suffix>\..+)$"


def _dim0(block: str, *parts: str) -> tuple[str, ...]:
    return tuple(rf"^.*\.layers\.(?P<layer>\d+)\.{block}\.{part}$" for part in parts)


@dataclass(frozen=True)
class Family:
    model_type: str
    # Config keys that hold the routed-expert count (every one present is updated on write).
    expert_count_keys: tuple[str, ...]
    top_k_keys: tuple[str, ...] = ("num_experts_per_tok",)
    # Nested sub-config holding the text model's keys (e.g. ("text_config",) for VL models).
    config_path: tuple[str, ...] = ()
    # On disk: per-expert tensors, e.g. "model.layers.3.mlp.experts.5.up_proj.weight".
    expert_tensor_re: str | None = _per_expert("mlp")  # None: no per-expert tensors
    # On disk: tensors whose dim 0 is the expert index (fused experts, router rows, biases).
    expert_dim0_re: tuple[str, ...] = _dim0("mlp", r"gate\.weight", _FUSED)
    # In memory: attribute path of the MoE block inside a decoder layer, and its parts.
    block_attr: str = "mlp"
    router_attr: str = "gate"
    experts_attr: str = "experts"
    # In memory: where the decoder layers live, tried in order (CausalLM, then VL wrappers).
    layers_paths: tuple[str, ...] = ("model.layers", "model.language_model.layers")
    # In memory: router attributes that shift expert SELECTION but not the weights
    # (DeepSeek's e_score_correction_bias); a removed expert must get -inf there too.
    selection_bias_attr: str | None = None
    # Grouped routing (DeepSeek-style): config keys of the group count and groups used per token.
    group_keys: tuple[str, str] | None = None
    # Which decoder layers are MoE (else every layer): see `moe_layers`.
    layer_types_key: str | None = None  # a list of per-layer types, MoE ones == moe_layer_type
    moe_layer_type: str = "moe"
    layer_pattern_key: str | None = None  # a string pattern, one char per layer, MoE == moe_layer_char
    moe_layer_char: str = "E"
    first_dense_key: str | None = None  # layers below this index are dense
    sparse_step_key: str | None = None  # layer i is MoE when (i + 1) % step == 0 ...
    dense_layers_key: str | None = None  # ... and i is not listed here
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- config (config.json as a dict) ----
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

    def num_groups(self, config: dict) -> tuple[int, int]:
        """(n_group, topk_group) for grouped routing, (1, 1) otherwise."""
        if self.group_keys is None:
            return 1, 1
        text = self.text_config(config)
        return int(text.get(self.group_keys[0]) or 1), int(text.get(self.group_keys[1]) or 1)

    def num_layers(self, config: dict) -> int:
        text = self.text_config(config)
        if self.layer_types_key and isinstance(text.get(self.layer_types_key), list):
            return len(text[self.layer_types_key])
        if self.layer_pattern_key and isinstance(text.get(self.layer_pattern_key), str):
            return len(text[self.layer_pattern_key])
        return int(text["num_hidden_layers"])

    def moe_layers(self, config: dict) -> list[int]:
        """Decoder-layer indices of the MoE layers, from the config alone."""
        text = self.text_config(config)
        layers = range(self.num_layers(config))
        if self.layer_types_key and isinstance(text.get(self.layer_types_key), list):
            return [i for i in layers if text[self.layer_types_key][i] == self.moe_layer_type]
        if self.layer_pattern_key and isinstance(text.get(self.layer_pattern_key), str):
            return [i for i in layers if text[self.layer_pattern_key][i] == self.moe_layer_char]
        if self.first_dense_key is not None:
            first = int(text.get(self.first_dense_key) or 0)
            return [i for i in layers if i >= first]
        if self.sparse_step_key is not None:
            step = int(text.get(self.sparse_step_key) or 1)
            dense = set(text.get(self.dense_layers_key) or []) if self.dense_layers_key else set()
            return [i for i in layers if i not in dense and (i + 1) % step == 0]
        return list(layers)

    def with_expert_count(self, config: dict, count: int) -> dict:
        """A copy of config.json with every expert-count key present set to `count`."""
        import copy

        new = copy.deepcopy(config)
        text = self.text_config(new)
        present = [key for key in self.expert_count_keys if key in text]
        if not present:
            self.num_experts(config)  # raises the clear error
        for key in present:
            text[key] = count
        return new

    def validate_kept(self, config: dict, kept: dict[int, list[int]], moe_layers: list[int] | None = None) -> None:
        """Refuse a selection that breaks the model, with the numbers and the fix."""
        experts, top_k = self.num_experts(config), self.top_k(config)
        layers = sorted(self.moe_layers(config) if moe_layers is None else moe_layers)
        if sorted(kept) != layers:
            raise UserError(
                f"kept experts are given for layers {sorted(kept)} but the MoE layers of this "
                f"{self.model_type} checkpoint are {layers}; give one entry per MoE layer"
            )
        for layer, indices in sorted(kept.items()):
            bad = [i for i in indices if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < experts]
            if bad:
                raise UserError(f"layer {layer}: expert indices {bad} are out of range 0..{experts - 1}")
            if len(set(indices)) != len(indices):
                raise UserError(f"layer {layer}: duplicate expert indices in {sorted(indices)}")
            if len(indices) < top_k:
                raise UserError(
                    f"layer {layer}: keeping {len(indices)} experts leaves fewer than top-k={top_k}; "
                    f"keep at least {top_k} in every layer (a lower ratio, or min_experts >= {top_k})"
                )
        self._validate_groups(config, kept)

    def _validate_groups(self, config: dict, kept: dict[int, list[int]]) -> None:
        n_group, topk_group = self.num_groups(config)
        if n_group <= 1:
            return
        experts, top_k = self.num_experts(config), self.top_k(config)
        per_group = experts // n_group
        for layer, indices in sorted(kept.items()):
            counts = [sum(1 for i in indices if i // per_group == g) for g in range(n_group)]
            if len(set(counts)) != 1:
                raise UserError(
                    f"layer {layer}: grouped routing ({n_group} groups of {per_group}) needs the same number "
                    f"of experts kept in every group, got {counts} per group; select per group "
                    f"(keep a multiple of {n_group} experts, spread evenly)"
                )
            if counts[0] < 2:
                raise UserError(
                    f"layer {layer}: grouped routing scores a group by its top 2 experts, so each of the "
                    f"{n_group} groups must keep >= 2 experts (keep >= {2 * n_group} per layer)"
                )
            if top_k > topk_group * counts[0]:
                raise UserError(
                    f"layer {layer}: top-k={top_k} exceeds topk_group={topk_group} x {counts[0]} experts "
                    f"per group; keep at least {-(-top_k // topk_group)} per group"
                )

    # ---- on disk ----
    def match_expert_tensor(self, name: str) -> re.Match | None:
        return re.match(self.expert_tensor_re, name) if self.expert_tensor_re else None

    def match_dim0_tensor(self, name: str) -> re.Match | None:
        for pattern in self.expert_dim0_re:
            match = re.match(pattern, name)
            if match:
                return match
        return None

    # ---- in memory ----
    def decoder_layers(self, model) -> list:
        for path in self.layers_paths:
            node = model
            for attr in path.split("."):
                node = getattr(node, attr, None)
                if node is None:
                    break
            if node is not None:
                return list(node)
        raise UserError(f"{self.model_type}: found no decoder layers at {', '.join(self.layers_paths)}")

    def moe_blocks(self, model) -> dict[int, Any]:
        """Decoder-layer index -> MoE block module (the ones with a router and experts)."""
        blocks = {}
        for index, layer in enumerate(self.decoder_layers(model)):
            block = getattr(layer, self.block_attr, None)
            if block is not None and hasattr(block, self.router_attr) and hasattr(block, self.experts_attr):
                blocks[index] = block
        return blocks

    def router(self, block):
        return getattr(block, self.router_attr)


_GROUPED: dict[str, Any] = dict(group_keys=("n_group", "topk_group"), selection_bias_attr="e_score_correction_bias")

FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in [
        Family(
            model_type="qwen3_moe",
            expert_count_keys=("num_experts", "num_local_experts"),
            sparse_step_key="decoder_sparse_step",
            dense_layers_key="mlp_only_layers",
        ),
        Family(
            model_type="gpt_oss",
            expert_count_keys=("num_local_experts", "num_experts"),
            top_k_keys=("num_experts_per_tok", "experts_per_token"),
            expert_tensor_re=None,  # every expert tensor is fused [E, ...]
            expert_dim0_re=_dim0(
                "mlp",
                r"router\.weight",
                r"router\.bias",
                r"experts\.(?:gate_up_proj|down_proj)(?:_bias|_blocks|_scales)?",
            ),
            router_attr="router",
            notes="fused experts on disk and in memory, 2-D expert biases and a router bias; "
            "MXFP4 *_blocks [E, R, G, 16] / *_scales [E, R, G] are [E, ...] too, so they are sliced the same "
            "way and stay MXFP4 (pruning/mxfp4.py; tests/pruning/test_mxfp4.py)",
        ),
        Family(
            model_type="nemotron_h",
            expert_count_keys=("n_routed_experts", "num_local_experts"),
            expert_tensor_re=_per_expert("mixer"),
            expert_dim0_re=_dim0("mixer", r"gate\.weight", r"gate\.e_score_correction_bias", _FUSED),
            block_attr="mixer",
            layers_paths=("model.layers", "backbone.layers"),
            layer_types_key="layers_block_type",
            layer_pattern_key="hybrid_override_pattern",
            notes="hybrid Mamba/attention/MoE; on disk 'backbone.layers.L.mixer.*', non-gated experts "
            "(up/down only); Mamba A_log/D/dt_bias are [heads], not per expert",
            **_GROUPED,
        ),
        Family(
            model_type="qwen3_5_moe",
            expert_count_keys=("num_experts",),
            config_path=("text_config",),
            notes="VL model: text keys in text_config, tensors under model.language_model.; "
            "shared_expert_gate.weight [1, H] is not per expert",
        ),
        Family(
            model_type="qwen3_5_moe_text",
            expert_count_keys=("num_experts",),
            notes="text-only Qwen3_5MoeForCausalLM layout",
        ),
        Family(
            model_type="mixtral",
            expert_count_keys=("num_local_experts", "num_experts"),
            expert_tensor_re=_per_expert("(?:block_sparse_moe|mlp)"),
            expert_dim0_re=_dim0("(?:block_sparse_moe|mlp)", r"gate\.weight", _FUSED),
            notes="on disk block_sparse_moe.experts.E.{w1,w3,w2}; in memory mlp.experts (fused)",
        ),
        Family(model_type="olmoe", expert_count_keys=("num_experts", "num_local_experts")),
        Family(
            model_type="qwen2_moe",
            expert_count_keys=("num_experts", "num_local_experts"),
            sparse_step_key="decoder_sparse_step",
            dense_layers_key="mlp_only_layers",
            notes="shared_expert + shared_expert_gate [1, H] are kept whole",
        ),
        Family(
            model_type="deepseek_v3",
            expert_count_keys=("n_routed_experts", "num_local_experts"),
            expert_dim0_re=_dim0("mlp", r"gate\.weight", r"gate\.e_score_correction_bias", _FUSED),
            first_dense_key="first_k_dense_replace",
            notes="grouped sigmoid routing with e_score_correction_bias, shared experts, dense first layers",
            **_GROUPED,
        ),
    ]
}


def family_for(config: dict) -> Family:
    """The family of a config.json dict; a clear error for an unsupported model_type."""
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise UserError(f"unsupported model_type {model_type!r}; supported MoE families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[model_type]
