"""Expert counts per MoE layer in config.json: one global count, or the standard `per_layer_config`.

A checkpoint whose layers keep different numbers of experts is written the way
transformers 5 describes heterogeneous models: the global count key holds the
largest count (so buffers sized from it fit every layer), and `per_layer_config`
lists only the layers that differ, e.g.

    "num_local_experts": 6,
    "per_layer_config": {"0": {"num_local_experts": 3}},
    "architectures": ["Qwen3MoePrunedForCausalLM"]

The architecture is renamed because stock model classes build every layer from
the global count: under the stock name, transformers reading the count would
raise an unhelpful error and a tool that ignored `per_layer_config` would build
wrong shapes. Under the renamed one, stock vLLM says the architecture is not
supported, and only the classes in `moeprune.models` (registered by importing
that package, and by the vLLM plugin) build it. Pure data: no torch here.
"""

from __future__ import annotations

from moeprune.errors import UserError

PER_LAYER_KEY = "per_layer_config"
# Stock architecture -> the architecture of its uneven (per-layer count) variant. A family whose
# stock class is not here cannot carry uneven counts; `moeprune.models` defines one class per entry.
UNEVEN_ARCHITECTURES: dict[str, str] = {
    "Qwen3MoeForCausalLM": "Qwen3MoePrunedForCausalLM",
    "OlmoeForCausalLM": "OlmoePrunedForCausalLM",
    "Qwen2MoeForCausalLM": "Qwen2MoePrunedForCausalLM",
    "MixtralForCausalLM": "MixtralPrunedForCausalLM",
    "GptOssForCausalLM": "GptOssPrunedForCausalLM",
    "Qwen3_5MoeForCausalLM": "Qwen3_5MoePrunedForCausalLM",
    "Qwen3_5MoeForConditionalGeneration": "Qwen3_5MoePrunedForConditionalGeneration",
    "DeepseekV3ForCausalLM": "DeepseekV3PrunedForCausalLM",
    "NemotronHForCausalLM": "NemotronHPrunedForCausalLM",
}
STOCK_ARCHITECTURES = {uneven: stock for stock, uneven in UNEVEN_ARCHITECTURES.items()}


def _present_count_keys(family, text: dict) -> list[str]:
    keys = [key for key in family.expert_count_keys if key in text]
    if not keys:
        raise UserError(
            f"{family.model_type}: config has none of {', '.join(family.expert_count_keys)}; "
            "is this a complete config.json?"
        )
    return keys


def layer_counts(family, config: dict) -> dict[int, int]:
    """MoE layer -> routed experts it holds, reading `per_layer_config` where a layer is listed."""
    text = family.text_config(config)
    overrides = {int(layer): values for layer, values in (text.get(PER_LAYER_KEY) or {}).items()}
    base = family.num_experts(config)
    counts = {}
    for layer in family.moe_layers(config):
        values = overrides.get(layer, {})
        listed = [int(values[key]) for key in family.expert_count_keys if key in values]
        counts[layer] = listed[0] if listed else base
    return counts


def is_uneven(family, config: dict) -> bool:
    return len(set(layer_counts(family, config).values())) > 1


def uneven_architectures(family, config: dict) -> list[str]:
    """The renamed architectures for an uneven variant of this config, or a UserError saying why not."""
    stock = [arch for arch in config.get("architectures") or [] if arch not in STOCK_ARCHITECTURES]
    missing = [arch for arch in stock if arch not in UNEVEN_ARCHITECTURES]
    if not stock or missing:
        supported = ", ".join(sorted(UNEVEN_ARCHITECTURES))
        raise UserError(
            f"{family.model_type} ({', '.join(missing or ['no architectures in config.json'])}) cannot hold different "
            f"expert counts per layer yet: moeprune.models has uneven classes only for {supported}; "
            "use allocation uniform (the same count in every layer)",
            param="allocation",
        )
    return [UNEVEN_ARCHITECTURES[arch] for arch in stock]


def with_layer_counts(family, config: dict, counts: dict[int, int]) -> dict:
    """A copy of config.json holding `counts` (MoE layer -> kept experts).

    Equal counts: the global count keys, as before (no `per_layer_config`). Different counts:
    global = max, `per_layer_config` for the layers below it, architectures renamed.
    """
    if PER_LAYER_KEY in family.text_config(config):
        raise UserError(
            f"the source config already has {PER_LAYER_KEY} (it is an uneven pruned checkpoint); "
            "prune from the unpruned source instead"
        )
    values = set(counts.values())
    if len(values) == 1:
        return family.with_expert_count(config, values.pop())
    architectures = uneven_architectures(family, config)
    top = max(values)
    new = family.with_expert_count(config, top)
    text = family.text_config(new)
    keys = _present_count_keys(family, text)
    text[PER_LAYER_KEY] = {
        str(layer): {key: count for key in keys} for layer, count in sorted(counts.items()) if count != top
    }
    new["architectures"] = architectures
    return new


def format_counts(counts: dict[int, int]) -> str:
    """'0:3 1:5 2:4' (MoE layer:experts), as `moeprune prune`, `inspect` and `verify` print them."""
    return " ".join(f"{layer}:{count}" for layer, count in sorted(counts.items()))
