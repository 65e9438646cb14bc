"""vLLM class for uneven Qwen3.5/3.6-MoE text checkpoints (see `moeprune.models.vllm_uneven` for the approach).

A module of its own because vLLM's Qwen3.5 model file imports transformers' Qwen2-VL image processor, which
needs torchvision: serving this family needs it in the engine's environment (stock Qwen3.5 does too), the
other families' classes must not.
"""

from __future__ import annotations

from torch import nn
from vllm.model_executor.layers.fusion.mm_input_norm import build_mm_input_norm
from vllm.model_executor.models.qwen3_5 import (
    Qwen3_5DecoderLayer,
    Qwen3_5Model,
    Qwen3_5MoeForCausalLM,
    Qwen3_5MoeForConditionalGeneration,
)
from vllm.model_executor.models.qwen3_next import Qwen3NextSparseMoeBlock
from vllm.model_executor.models.qwen3_vl import Qwen3_VisionTransformer
from vllm.model_executor.models.utils import PPMissingLayer, extract_layer_index, make_layers, maybe_prefix
from vllm.tokenizers.registry import cached_tokenizer_from_config

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
                layer_type=config.layer_types[extract_layer_index(prefix)],
                prefix=prefix,
            ),
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
        set_moe_metadata(
            self,
            [
                layer.mlp
                for layer in model.layers
                if not isinstance(layer, PPMissingLayer) and isinstance(layer.mlp, Qwen3NextSparseMoeBlock)
            ],
        )


class Qwen3_5MoePrunedForConditionalGeneration(Qwen3_5MoeForConditionalGeneration):
    """Qwen3.5/3.6-MoE as shipped (vision tower + text model): the stock multimodal model whose language model
    is `Qwen3_5MoePrunedForCausalLM`. The stock constructor hard-wires its language-model class, so this one
    is the stock constructor with that class swapped; the processor registration is inherited."""

    def __init__(self, *, vllm_config, prefix: str = "model"):
        refuse_unservable(vllm_config)
        nn.Module.__init__(self)
        config = vllm_config.model_config.hf_config
        self.config = config
        self.model_config = vllm_config.model_config
        self.multimodal_config = vllm_config.model_config.get_multimodal_config()
        self.use_data_parallel = self.multimodal_config.mm_encoder_tp_mode == "data"
        self.is_multimodal_pruning_enabled = self.multimodal_config.is_multimodal_pruning_enabled()
        self.video_pruning_rate = self.multimodal_config.video_pruning_rate
        self._tokenizer = cached_tokenizer_from_config(vllm_config.model_config)
        self.use_deepstack = hasattr(config.vision_config, "deepstack_visual_indexes")
        self.deepstack_num_level = len(config.vision_config.deepstack_visual_indexes) if self.use_deepstack else 0
        self.visual_dim = config.vision_config.out_hidden_size
        self.multiscale_dim = self.visual_dim * self.deepstack_num_level
        with self._mark_tower_model(vllm_config, {"image", "video"}):
            self.visual = Qwen3_VisionTransformer(
                config.vision_config,
                norm_eps=getattr(config, "rms_norm_eps", 1e-6),
                quant_config=vllm_config.quant_config,
                input_norm=build_mm_input_norm(self.model_config),
                prefix=maybe_prefix(prefix, "visual"),
            )
        with self._mark_language_model(vllm_config):
            # As in the stock constructor: vLLM's annotations (a protocol with an abstract `lora_manager`, a
            # Qwen3-VL language-model type) do not describe the Qwen3.5 class it builds here.
            self.language_model = Qwen3_5MoePrunedForCausalLM(  # type: ignore[abstract, assignment]
                vllm_config=vllm_config, prefix=maybe_prefix(prefix, "language_model")
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors
        # The stock MoE metadata reads one layer's count; EPLB is refused, so it only reports: the largest.
        for name in (
            "moe_layers",
            "num_moe_layers",
            "num_expert_groups",
            "num_shared_experts",
            "num_logical_experts",
            "num_physical_experts",
            "num_local_physical_experts",
            "num_routed_experts",
            "num_redundant_experts",
        ):
            setattr(self, name, getattr(self.language_model, name))
