"""vLLM model classes that build each MoE layer's FusedMoE with that layer's expert count.

vLLM's decoder layers read their whole configuration from
`vllm_config.model_config.hf_text_config` when they are built. Each decoder
layer here is the stock one built from a view of `vllm_config` whose
`hf_text_config` is that layer's transformers config
(`hf_config.per_layer_config[i]`, the global config with the layer's overrides
applied). The rest of the engine keeps the real `vllm_config`: FusedMoE
registers itself in the real compilation context (it reads
`get_current_vllm_config()`), and vLLM sizes shared buffers from the
heterogeneity-aware architecture config (largest count). Weight loading builds
each layer's expert mapping from that layer's own FusedMoE, and the CPU kernels
read the count from tensor shapes, so nothing else needs to change.

Imported by vLLM only (through `moeprune.models.vllm_plugin`, lazily).
"""

from __future__ import annotations

import copy

from torch import nn
from vllm.model_executor.layers.fused_moe.utils import is_model_fused_shared_expert_compatible
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead
from vllm.model_executor.models.gpt_oss import GptOssForCausalLM, GptOssModel, MLPBlock, TransformerBlock
from vllm.model_executor.models.mixtral import MixtralDecoderLayer, MixtralForCausalLM, MixtralModel, MixtralMoE
from vllm.model_executor.models.olmoe import OlmoeDecoderLayer, OlmoeForCausalLM
from vllm.model_executor.models.qwen2_moe import Qwen2MoeDecoderLayer, Qwen2MoeForCausalLM, Qwen2MoeModel
from vllm.model_executor.models.qwen3_moe import (
    Qwen3MoeDecoderLayer,
    Qwen3MoeForCausalLM,
    Qwen3MoeModel,
    Qwen3MoeSparseMoeBlock,
)
from vllm.model_executor.models.utils import PPMissingLayer, extract_layer_index, make_layers, maybe_prefix

from moeprune.formats.uneven_serving import refuse_unservable
from moeprune.models.config_access import global_counts_readable


def _with_text_config(vllm_config, text_config):
    """`vllm_config` with `text_config` as its transformers config; everything else is the engine's own object.

    Shallow copies, set with `object.__setattr__` because both are validated dataclasses and this is
    not a new setting, only a narrower view of the same one.
    """
    model_config = copy.copy(vllm_config.model_config)
    # Some families' layers read hf_config (OLMoE, Mixtral, Qwen2-MoE), others hf_text_config (Qwen3-MoE):
    # for a text-only model they are the same object, and both views must agree.
    if vllm_config.model_config.hf_config is vllm_config.model_config.hf_text_config:
        object.__setattr__(model_config, "hf_config", text_config)
    object.__setattr__(model_config, "hf_text_config", text_config)
    view = copy.copy(vllm_config)
    object.__setattr__(view, "model_config", model_config)
    return view


def layer_view(vllm_config, layer_idx: int):
    """`vllm_config` as decoder layer `layer_idx` should see it: its own transformers config."""
    text = vllm_config.model_config.hf_text_config
    if not getattr(text, "is_heterogeneous", False):
        return vllm_config
    return _with_text_config(vllm_config, text.per_layer_config[layer_idx])


def without_layers(vllm_config):
    """`vllm_config` for a model with no decoder layers.

    Mixtral's and Qwen2-MoE's model constructors build every decoder layer from one config object
    and are wrapped by vLLM's compile decorator, which must run. Given this view they build only
    what all layers share (embeddings, final norm, the compile wrapper); the subclass then builds
    the layers itself, each from its own config (`build_layers`).
    """
    shell = copy.copy(vllm_config.model_config.hf_text_config.per_layer_config[0])
    shell.num_hidden_layers = 0
    return _with_text_config(vllm_config, shell)


def build_layers(model, vllm_config, prefix: str, make_layer) -> None:
    """Give `model` (built with `without_layers`) its real config and layers: `make_layer(config, prefix)`."""
    config = vllm_config.model_config.hf_text_config
    model.config = config
    model.start_layer, model.end_layer, model.layers = make_layers(
        config.num_hidden_layers,
        # make_layers passes the prefix by keyword.
        lambda prefix: make_layer(config.per_layer_config[extract_layer_index(prefix)], prefix),
        prefix=f"{prefix}.layers",
    )


def set_moe_metadata(model, blocks: list) -> None:
    """vLLM's MixtureOfExperts fields. They describe one count for all layers and serve expert load
    balancing, which `refuse_unservable` refuses for uneven counts; they hold the largest layer's."""
    if not blocks:
        raise RuntimeError("no MoE layer was built; does the checkpoint match its architecture?")
    largest = max(blocks, key=lambda block: block.n_routed_experts)
    model.moe_layers = [block.experts for block in blocks]
    model.num_moe_layers = len(blocks)
    model.num_expert_groups = 1
    model.num_shared_experts = 0
    model.num_logical_experts = largest.n_logical_experts
    model.num_physical_experts = largest.n_physical_experts
    model.num_local_physical_experts = largest.n_local_physical_experts
    model.num_routed_experts = largest.n_routed_experts
    model.num_redundant_experts = largest.n_redundant_experts


def causal_lm_parts(lm, vllm_config, prefix: str, model) -> None:
    """What every family's causal LM holds around its model: LM head (tied or not), logits processor."""
    config = vllm_config.model_config.hf_text_config
    lm.config = config
    lm.quant_config = vllm_config.quant_config
    lm.model = model
    lm.lm_head = ParallelLMHead(
        config.vocab_size, config.hidden_size, quant_config=lm.quant_config, prefix=maybe_prefix(prefix, "lm_head")
    )
    if config.tie_word_embeddings:
        lm.lm_head = lm.lm_head.tie_weights(model.embed_tokens)
    lm.logits_processor = LogitsProcessor(config.vocab_size)
    lm.make_empty_intermediate_tensors = model.make_empty_intermediate_tensors


class UnevenQwen3MoeDecoderLayer(Qwen3MoeDecoderLayer):
    def __init__(self, vllm_config, prefix: str = "", **kwargs) -> None:
        super().__init__(vllm_config=layer_view(vllm_config, extract_layer_index(prefix)), prefix=prefix, **kwargs)


class UnevenQwen3MoeModel(Qwen3MoeModel):
    def __init__(self, *, vllm_config, prefix: str = "", decoder_layer_type=UnevenQwen3MoeDecoderLayer):
        super().__init__(vllm_config=vllm_config, prefix=prefix, decoder_layer_type=decoder_layer_type)


class Qwen3MoePrunedForCausalLM(Qwen3MoeForCausalLM):
    """The stock causal LM around `UnevenQwen3MoeModel` (the stock constructor hard-wires its model class)."""

    def __init__(self, *, vllm_config, prefix: str = ""):
        refuse_unservable(vllm_config)
        nn.Module.__init__(self)
        model = UnevenQwen3MoeModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        causal_lm_parts(self, vllm_config, prefix, model)
        set_moe_metadata(
            self,
            [
                layer.mlp
                for layer in model.layers
                if not isinstance(layer, PPMissingLayer) and isinstance(layer.mlp, Qwen3MoeSparseMoeBlock)
            ],
        )


class UnevenOlmoeDecoderLayer(OlmoeDecoderLayer):
    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=layer_view(vllm_config, extract_layer_index(prefix)), prefix=prefix)


class OlmoePrunedForCausalLM(OlmoeForCausalLM):
    """The stock OLMoE causal LM; its constructor takes the decoder layer class (no MoE metadata to set)."""

    def __init__(self, *, vllm_config, prefix: str = "", layer_type=UnevenOlmoeDecoderLayer):
        refuse_unservable(vllm_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix, layer_type=layer_type)


class UnevenQwen2MoeModel(Qwen2MoeModel):
    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=without_layers(vllm_config), prefix=prefix)
        build_layers(
            self,
            vllm_config,
            prefix,
            lambda config, layer_prefix: Qwen2MoeDecoderLayer(
                config=config,
                cache_config=vllm_config.cache_config,
                quant_config=vllm_config.quant_config,
                prefix=layer_prefix,
            ),
        )


class Qwen2MoePrunedForCausalLM(Qwen2MoeForCausalLM):
    def __init__(self, *, vllm_config, prefix: str = ""):
        refuse_unservable(vllm_config)
        nn.Module.__init__(self)
        model = UnevenQwen2MoeModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        causal_lm_parts(self, vllm_config, prefix, model)


class UnevenMixtralModel(MixtralModel):
    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=without_layers(vllm_config), prefix=prefix)
        build_layers(
            self,
            vllm_config,
            prefix,
            lambda config, layer_prefix: MixtralDecoderLayer(
                config,
                vllm_config.cache_config,
                quant_config=vllm_config.quant_config,
                prefix=layer_prefix,
                enable_eplb=self.enable_eplb,
            ),
        )


class MixtralPrunedForCausalLM(MixtralForCausalLM):
    def __init__(self, *, vllm_config, prefix: str = ""):
        refuse_unservable(vllm_config)
        nn.Module.__init__(self)
        model = UnevenMixtralModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        causal_lm_parts(self, vllm_config, prefix, model)
        set_moe_metadata(
            self,
            [
                layer.block_sparse_moe
                for layer in model.layers
                if isinstance(getattr(layer, "block_sparse_moe", None), MixtralMoE)
            ],
        )


class UnevenGptOssMLPBlock(MLPBlock):
    def __init__(self, vllm_config, layer_idx: int, prefix: str = "") -> None:
        super().__init__(layer_view(vllm_config, layer_idx), layer_idx, prefix=prefix)


class UnevenGptOssTransformerBlock(TransformerBlock):
    mlp_cls = UnevenGptOssMLPBlock


class UnevenGptOssModel(GptOssModel):
    block_cls = UnevenGptOssTransformerBlock

    def load_weights(self, weights):
        # The stock loader reads the global count up front for expert parallelism's per-rank slices; with
        # uneven counts expert parallelism is refused, and the unquantized path it then takes copies each
        # layer's tensors whole, by their own shapes.
        with global_counts_readable(self.config):
            return super().load_weights(weights)


class GptOssPrunedForCausalLM(GptOssForCausalLM):
    """The stock gpt-oss causal LM around `UnevenGptOssModel` (the stock constructor hard-wires its model class)."""

    def __init__(self, *, vllm_config, prefix: str = ""):
        refuse_unservable(vllm_config)
        nn.Module.__init__(self)
        self.vllm_config = vllm_config
        self.config = vllm_config.model_config.hf_config
        self.model = UnevenGptOssModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        self.lm_head = ParallelLMHead(
            self.config.vocab_size, self.config.hidden_size, prefix=maybe_prefix(prefix, "lm_head")
        )
        self.logits_processor = LogitsProcessor(self.config.vocab_size)
        self.make_empty_intermediate_tensors = self.model.make_empty_intermediate_tensors


def refuse_fused_shared_experts(model, block_type) -> None:
    """ROCm AITER only: the shared experts would be packed after the routed ones at one global offset."""
    model.is_fused_shared_expert_enabled = is_model_fused_shared_expert_compatible(model.layers, block_type, "mlp")
    if model.is_fused_shared_expert_enabled:
        raise RuntimeError(
            "fused shared experts (ROCm AITER) cannot place the shared experts after a different "
            "number of routed experts in each layer; disable AITER's shared-expert fusion"
        )
