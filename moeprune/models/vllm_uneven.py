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
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead
from vllm.model_executor.models.olmoe import OlmoeDecoderLayer, OlmoeForCausalLM
from vllm.model_executor.models.qwen3_moe import (
    Qwen3MoeDecoderLayer,
    Qwen3MoeForCausalLM,
    Qwen3MoeModel,
    Qwen3MoeSparseMoeBlock,
)
from vllm.model_executor.models.utils import PPMissingLayer, extract_layer_index, maybe_prefix

from moeprune.models.serving import refuse_unservable


def layer_view(vllm_config, layer_idx: int):
    """`vllm_config` as layer `layer_idx` should see it: its own transformers config as hf_text_config.

    Shallow copies: everything but the model config's transformers config is the engine's own object.
    `object.__setattr__` because both are validated dataclasses and this is not a new setting,
    only a narrower view of the same one.
    """
    text = vllm_config.model_config.hf_text_config
    if not getattr(text, "is_heterogeneous", False):
        return vllm_config
    layer_config = text.per_layer_config[layer_idx]
    model_config = copy.copy(vllm_config.model_config)
    # Some families' layers read hf_config (OLMoE), others hf_text_config (Qwen3-MoE): for a text-only
    # model they are the same object, and both views must agree.
    if vllm_config.model_config.hf_config is text:
        object.__setattr__(model_config, "hf_config", layer_config)
    object.__setattr__(model_config, "hf_text_config", layer_config)
    view = copy.copy(vllm_config)
    object.__setattr__(view, "model_config", model_config)
    return view


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
        config = vllm_config.model_config.hf_text_config
        self.config = config
        self.quant_config = vllm_config.quant_config
        self.model = UnevenQwen3MoeModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, quant_config=self.quant_config,
                                      prefix=maybe_prefix(prefix, "lm_head"))
        if config.tie_word_embeddings:
            self.lm_head = self.lm_head.tie_weights(self.model.embed_tokens)
        self.logits_processor = LogitsProcessor(config.vocab_size)
        self.make_empty_intermediate_tensors = self.model.make_empty_intermediate_tensors
        self._set_moe_metadata()

    def _set_moe_metadata(self) -> None:
        """vLLM's MixtureOfExperts fields. They describe one count for all layers and serve expert load
        balancing, which `refuse_unservable` refuses for uneven counts; they hold the largest layer's."""
        blocks = [layer.mlp for layer in self.model.layers
                  if not isinstance(layer, PPMissingLayer) and isinstance(layer.mlp, Qwen3MoeSparseMoeBlock)]
        if not blocks:
            raise RuntimeError("no MoE layer was built; is this a Qwen3-MoE checkpoint?")
        largest = max(blocks, key=lambda block: block.n_routed_experts)
        self.moe_layers = [block.experts for block in blocks]
        self.num_moe_layers = len(blocks)
        self.num_expert_groups = 1
        self.num_shared_experts = 0
        self.num_logical_experts = largest.n_logical_experts
        self.num_physical_experts = largest.n_physical_experts
        self.num_local_physical_experts = largest.n_local_physical_experts
        self.num_routed_experts = largest.n_routed_experts
        self.num_redundant_experts = largest.n_redundant_experts


class UnevenOlmoeDecoderLayer(OlmoeDecoderLayer):
    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=layer_view(vllm_config, extract_layer_index(prefix)), prefix=prefix)


class OlmoePrunedForCausalLM(OlmoeForCausalLM):
    """The stock OLMoE causal LM; its constructor takes the decoder layer class (no MoE metadata to set)."""

    def __init__(self, *, vllm_config, prefix: str = "", layer_type=UnevenOlmoeDecoderLayer):
        refuse_unservable(vllm_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix, layer_type=layer_type)
