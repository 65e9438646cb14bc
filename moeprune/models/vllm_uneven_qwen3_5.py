"""vLLM class for uneven Qwen3.5/3.6-MoE text checkpoints (see `moeprune.models.vllm_uneven` for the approach).

A module of its own because vLLM's Qwen3.5 model file imports transformers' Qwen2-VL image processor, which
needs torchvision: serving this family needs it in the engine's environment (stock Qwen3.5 does too), the
other families' classes must not.
"""

from __future__ import annotations

from torch import nn
from vllm.model_executor.models.qwen3_5 import Qwen3_5DecoderLayer, Qwen3_5Model, Qwen3_5MoeForCausalLM
from vllm.model_executor.models.qwen3_next import Qwen3NextSparseMoeBlock
from vllm.model_executor.models.utils import PPMissingLayer, extract_layer_index, make_layers, maybe_prefix

from moeprune.formats.uneven_serving import refuse_unservable
from moeprune.models.config_access import global_counts_readable
from moeprune.models.vllm_uneven import (
    causal_lm_parts,
    layer_view,
    refuse_fused_shared_experts,
    set_moe_metadata,
    without_layers,
)


class UnevenQwen3_5Model(Qwen3_5Model):
    """Qwen3.5-MoE text model (gated-delta-net and full-attention layers, each with a sparse MoE block).

    The stock constructor builds every layer from one config and is wrapped by vLLM's compile decorator:
    it is given a zero-layer view, then each layer is the stock decoder layer built from its own view
    (`layer_view`), so the linear-attention state and the attention cache register in the engine's real
    compilation context as before.
    """

    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=without_layers(vllm_config), prefix=prefix)
        config = vllm_config.model_config.hf_text_config
        self.config = config
        self.start_layer, self.end_layer, self.layers = make_layers(
            config.num_hidden_layers,
            lambda prefix: Qwen3_5DecoderLayer(
                layer_view(vllm_config, extract_layer_index(prefix)),
                layer_type=config.layer_types[extract_layer_index(prefix)], prefix=prefix),
            prefix=f"{prefix}.layers",
        )
        refuse_fused_shared_experts(self, Qwen3NextSparseMoeBlock)

    def load_weights(self, weights):
        # The stock loader reads the global count only to offset fused shared experts, which are off (above).
        with global_counts_readable(self.config):
            return super().load_weights(weights)


class Qwen3_5MoePrunedForCausalLM(Qwen3_5MoeForCausalLM):
    """The stock Qwen3.5-MoE causal LM (hybrid: its mamba-state hooks are the stock class's) around
    `UnevenQwen3_5Model`; the stock constructor hard-wires its model class."""

    def __init__(self, *, vllm_config, prefix: str = ""):
        refuse_unservable(vllm_config)
        nn.Module.__init__(self)
        self.vllm_config = vllm_config
        self.model_config = vllm_config.model_config
        self.scheduler_config = vllm_config.scheduler_config
        model = UnevenQwen3_5Model(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        causal_lm_parts(self, vllm_config, prefix, model)
        set_moe_metadata(self, [layer.mlp for layer in model.layers if not isinstance(layer, PPMissingLayer)
                                and isinstance(layer.mlp, Qwen3NextSparseMoeBlock)])
