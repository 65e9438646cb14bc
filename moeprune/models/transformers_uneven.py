"""transformers classes that build each MoE layer with its own expert count.

Each class is its stock class plus `UnevenExperts`: the stock constructor builds
every layer from the global count (the largest), then every MoE block of a layer
listed in `per_layer_config` is rebuilt from that layer's config. Under
`from_pretrained` construction runs on the meta device, so the larger blocks
built first cost no memory; weights are loaded after the rebuild, into the
right shapes. Nothing of the stock forward pass is changed: a block only reads
its expert count from its own parameters' shapes and its own config.
"""

from __future__ import annotations

import transformers
from transformers.models.deepseek_v3.configuration_deepseek_v3 import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3ForCausalLM
from transformers.models.gpt_oss.configuration_gpt_oss import GptOssConfig
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssForCausalLM
from transformers.models.mixtral.configuration_mixtral import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import MixtralForCausalLM
from transformers.models.nemotron_h.configuration_nemotron_h import NemotronHConfig
from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHForCausalLM
from transformers.models.olmoe.configuration_olmoe import OlmoeConfig
from transformers.models.olmoe.modeling_olmoe import OlmoeForCausalLM
from transformers.models.qwen2_moe.configuration_qwen2_moe import Qwen2MoeConfig
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeForCausalLM
from transformers.models.qwen3_5_moe.configuration_qwen3_5_moe import Qwen3_5MoeConfig, Qwen3_5MoeTextConfig
from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import (
    Qwen3_5MoeForCausalLM,
    Qwen3_5MoeForConditionalGeneration,
)
from transformers.models.qwen3_moe.configuration_qwen3_moe import Qwen3MoeConfig
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeForCausalLM

from moeprune.errors import UserError
from moeprune.formats.families import FAMILIES
from moeprune.models.config_access import global_counts_readable


def _check_only_counts_vary(config, family, class_name: str) -> None:
    varying = set(config.per_layer_attributes or ()) if getattr(config, "is_heterogeneous", False) else set()
    other = sorted(varying - set(family.expert_count_keys))
    if other:
        raise UserError(
            f"{class_name} builds layers that differ only in their expert count, but this config's "
            f"per_layer_config also varies {', '.join(other)}; load it with a class that supports those"
        )


class UnevenExperts:
    """Mixin (first base) for a stock model class: per-layer expert counts from `per_layer_config`.

    For a multimodal model the text config (`config.get_text_config()`) carries `per_layer_config`;
    for a text-only one that is the config itself.
    """

    model_type: str  # the family (moeprune.formats.families) whose blocks are rebuilt
    auto_class: str = "AutoModelForCausalLM"  # the transformers auto class that loads the whole checkpoint

    def __init__(self, config, *args, **kwargs):
        family = FAMILIES[self.model_type]
        text = config.get_text_config()
        _check_only_counts_vary(text, family, type(self).__name__)
        with global_counts_readable(text):
            super().__init__(config, *args, **kwargs)
        if getattr(text, "is_heterogeneous", False):
            self._rebuild_listed_blocks(text, family)
            self.post_init()  # weight init / tying bookkeeping for the rebuilt blocks

    def _rebuild_listed_blocks(self, config, family) -> None:
        listed = config._heterogeneity_spec.per_layer_overrides
        blocks = family.moe_blocks(self)
        for layer in sorted(listed):
            if layer not in blocks:
                raise UserError(
                    f"per_layer_config sets an expert count for layer {layer}, which is not an MoE "
                    f"layer of this {family.model_type} model (MoE layers: {sorted(blocks)})"
                )
            decoder_layer = family.decoder_layers(self)[layer]
            block = getattr(decoder_layer, family.block_attr)
            setattr(decoder_layer, family.block_attr, type(block)(config.per_layer_config[layer]))


class Qwen3MoePrunedForCausalLM(UnevenExperts, Qwen3MoeForCausalLM):
    model_type = "qwen3_moe"


class OlmoePrunedForCausalLM(UnevenExperts, OlmoeForCausalLM):
    model_type = "olmoe"


class Qwen2MoePrunedForCausalLM(UnevenExperts, Qwen2MoeForCausalLM):
    model_type = "qwen2_moe"


class MixtralPrunedForCausalLM(UnevenExperts, MixtralForCausalLM):
    model_type = "mixtral"


class GptOssPrunedForCausalLM(UnevenExperts, GptOssForCausalLM):
    """gpt-oss: each block's fused expert tensors ([E, ...], biases included) and router are built at its
    layer's count. The causal LM's own `num_experts` (the global count) only feeds the auxiliary load-balancing
    loss of training, which assumes one count; it is left as the stock class sets it."""

    model_type = "gpt_oss"


class Qwen3_5MoePrunedForCausalLM(UnevenExperts, Qwen3_5MoeForCausalLM):
    """Qwen3.5/3.6-MoE, text only: every decoder layer (gated-delta-net or full attention) has a sparse MoE
    block with a shared expert; only the routed experts and the router are rebuilt per layer."""

    model_type = "qwen3_5_moe_text"


class DeepseekV3PrunedForCausalLM(UnevenExperts, DeepseekV3ForCausalLM):
    """DeepSeek-V3: the dense first layers stay as they are; each MoE block (router with its selection bias,
    routed and shared experts) is rebuilt at its layer's count. Its grouped router splits the layer's own count
    into n_group groups, so every layer keeps the same number in each group (checked when the plan is made)."""

    model_type = "deepseek_v3"


class NemotronHPrunedForCausalLM(UnevenExperts, NemotronHForCausalLM):
    """Nemotron-H (hybrid Mamba/attention/MoE): only the MoE blocks (`mixer` of the layers typed "moe") are
    rebuilt, each with its router (and selection bias), fused up/down experts and shared expert at its layer's
    count; Mamba and attention layers are the stock ones. Its grouped router splits the layer's own count into
    n_group groups (1 in the released checkpoints), so every layer keeps the same number in each group."""

    model_type = "nemotron_h"


class Qwen3_5MoePrunedForConditionalGeneration(UnevenExperts, Qwen3_5MoeForConditionalGeneration):
    """Qwen3.5/3.6-MoE as shipped (vision tower + the text model under `model.language_model`):
    `per_layer_config` sits in `text_config`; the vision tower is the stock one."""

    model_type = "qwen3_5_moe"
    auto_class = "AutoModelForImageTextToText"


# (config class, stock class, uneven class) for every family with an uneven class.
CLASSES: tuple[tuple[type, type, type[UnevenExperts]], ...] = (
    (Qwen3MoeConfig, Qwen3MoeForCausalLM, Qwen3MoePrunedForCausalLM),
    (OlmoeConfig, OlmoeForCausalLM, OlmoePrunedForCausalLM),
    (Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen2MoePrunedForCausalLM),
    (MixtralConfig, MixtralForCausalLM, MixtralPrunedForCausalLM),
    (GptOssConfig, GptOssForCausalLM, GptOssPrunedForCausalLM),
    (Qwen3_5MoeTextConfig, Qwen3_5MoeForCausalLM, Qwen3_5MoePrunedForCausalLM),
    (Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration, Qwen3_5MoePrunedForConditionalGeneration),
    (DeepseekV3Config, DeepseekV3ForCausalLM, DeepseekV3PrunedForCausalLM),
    (NemotronHConfig, NemotronHForCausalLM, NemotronHPrunedForCausalLM),
)


def _chooser(stock: type, uneven: type[UnevenExperts]) -> type:
    """The class AutoModelForCausalLM maps the stock config class to once this package is imported.

    It is the stock class in every respect (a subclass that renames itself back, so pipelines, error
    messages and transformers' remote-code rules see the stock class), except that its two
    constructors used by the auto classes hand over to the uneven class when the config asks for it:
    by its architecture, or by being heterogeneous. transformers' own way to map one config class to
    several model classes (a tuple, chosen by `config.architectures`) cannot be used: it iterates
    `config.architectures`, which is None for a fresh config, and would break `from_config` for
    every stock model of the family.
    """

    def pick(config) -> type:
        named = uneven.__name__ in (getattr(config, "architectures", None) or [])
        return uneven if named or getattr(config.get_text_config(), "is_heterogeneous", False) else stock

    def from_pretrained(cls, *args, config=None, **kwargs):
        chosen = stock if config is None or isinstance(config, str) else pick(config)
        return chosen.from_pretrained(*args, config=config, **kwargs)

    def _from_config(cls, config, **kwargs):
        return pick(config)._from_config(config, **kwargs)

    namespace = {
        "from_pretrained": classmethod(from_pretrained),
        "_from_config": classmethod(_from_config),
        "__module__": stock.__module__,
        "__qualname__": stock.__qualname__,
        "__doc__": stock.__doc__,
    }
    return type(stock.__name__, (stock,), namespace)


def register() -> None:
    """Map each stock config class to a chooser between its stock and uneven class in the uneven class's
    auto class (`AutoModelForCausalLM`, or `AutoModelForImageTextToText` for a multimodal checkpoint).

    Stock checkpoints and fresh configs still get the stock class; a checkpoint whose architecture
    names the uneven class gets that one. Idempotent.
    """
    for config_class, stock, uneven in CLASSES:
        getattr(transformers, uneven.auto_class).register(config_class, _chooser(stock, uneven), exist_ok=True)
