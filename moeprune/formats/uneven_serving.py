"""What an engine needs before it serves a checkpoint with uneven expert counts; pure checks (no torch, no vLLM).

`check_servable(model_dir)` is for whoever starts an engine (the gateway, a script): it says before any
process starts whether this environment's vLLM will find a class for the checkpoint's architecture.
`refuse_unservable(vllm_config)` runs inside vLLM, in the model's constructor (the first place the
engine's parallel settings and the checkpoint meet), before any weight is allocated.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.checkpoint import load_config
from moeprune.formats.expert_counts import is_uneven, layer_counts
from moeprune.formats.families import family_for

PLUGIN_GROUP = "vllm.general_plugins"
PLUGIN_NAME = "moeprune_uneven_experts"
PLUGIN_TARGET = "moeprune.models.vllm_plugin:register"
# Families whose vLLM 0.32 weight loader reads the global expert count where a layer's own is needed, for
# expert parallelism (every rank's slice is global count // ranks) and for quantized experts (reshaped with
# the global count). Only their unquantized, non-expert-parallel path loads each layer by its own shapes.
GLOBAL_COUNT_LOADERS = {"gpt_oss"}
# Families with an uneven transformers class that vLLM cannot serve uneven: (why, what to do instead), checked
# before any engine starts. There is no vLLM class for them in the plugin.
NOT_SERVABLE_UNEVEN: dict[str, tuple[str, str]] = {
    "deepseek_v3": (
        "vLLM 0.32 refuses every heterogeneous MLA model while it reads the config, before any model class is "
        "looked up (NotImplementedError: Heterogeneous MLA models are not supported), so no plugin class can "
        "build it",
        "it loads in transformers (import moeprune.models); to serve it with vLLM, prune with allocation uniform",
    ),
    "nemotron_h": (
        "vLLM 0.32's NemotronH model builds every MoE layer from the one global n_routed_experts and never reads "
        "per_layer_config, and vLLM's CPU build cannot run nemotron_h's non-gated (relu2) experts at all, uneven "
        "or not (is_act_and_mul=False is supported only for CUDA, XPU and ROCm)",
        "serve it with transformers (AutoModelForCausalLM after import moeprune.models), or prune with allocation "
        "uniform and serve that with vLLM on a GPU",
    ),
}


def plugin_installed() -> bool:
    """Whether vLLM in this environment will load the plugin (it discovers entry points the same way)."""
    return any(point.name == PLUGIN_NAME for point in entry_points(group=PLUGIN_GROUP))


def _counts_text(counts: dict[int, int]) -> str:
    return ", ".join(f"layer {layer}: {count}" for layer, count in sorted(counts.items()))


def check_servable(model_dir: str | Path) -> None:
    """Refuse an uneven checkpoint when vLLM here would not find its class, naming what to install."""
    config = load_config(model_dir)
    family = family_for(config)
    if not is_uneven(family, config):
        return
    counts = layer_counts(family, config)
    if family.model_type in NOT_SERVABLE_UNEVEN:
        why, fix = NOT_SERVABLE_UNEVEN[family.model_type]
        raise UserError(
            f"{model_dir} keeps different expert counts per layer ({_counts_text(counts)}), which vLLM cannot serve "
            f"for {family.model_type}: {why}; {fix}"
        )
    if plugin_installed():
        return
    raise UserError(
        f"{model_dir} keeps different expert counts per layer ({_counts_text(counts)}; architecture "
        f"{', '.join(config.get('architectures') or [])}), which stock vLLM cannot build; install moe-prune-serve "
        f"in the engine's Python environment (pip install -e <repo>) so vLLM loads its plugin "
        f"'{PLUGIN_NAME}' (entry point {PLUGIN_GROUP}), or prune with allocation uniform"
    )


def _hf_layer_counts(text_config) -> dict[int, int]:
    """MoE layer -> expert count from vLLM's (transformers) config object."""
    family = family_for({"model_type": text_config.model_type})
    counts = {}
    for layer in family.moe_layers(text_config.to_dict()):
        layer_config = text_config.per_layer_config[layer]
        for key in family.expert_count_keys:
            value = getattr(layer_config, key, None)
            if value is not None:
                counts[layer] = int(value)
                break
    return counts


def refuse_unservable(vllm_config) -> None:
    """Refuse engine settings that cannot work when layers hold different numbers of experts."""
    text = vllm_config.model_config.hf_text_config
    if not getattr(text, "is_heterogeneous", False):
        return
    counts = _hf_layer_counts(text)
    parallel = vllm_config.parallel_config
    if parallel.enable_eplb:
        raise UserError(
            f"expert load balancing (enable_eplb / --enable-eplb) moves experts between ranks assuming every layer "
            f"holds the same number, but this checkpoint keeps {_counts_text(counts)}; start the engine without it"
        )
    if text.model_type in GLOBAL_COUNT_LOADERS:
        _refuse_global_count_loading(text, parallel, counts)
    if parallel.enable_expert_parallel:
        ranks = parallel.tensor_parallel_size * parallel.data_parallel_size
        bad = {layer: count for layer, count in counts.items() if count % ranks}
        if bad:
            raise UserError(
                f"expert parallelism (--enable-expert-parallel) splits each layer's experts evenly over {ranks} "
                f"ranks, but {_counts_text(bad)} do not divide by {ranks}; start the engine without "
                "--enable-expert-parallel (tensor parallelism splits every expert instead), or use a rank count "
                "that divides every layer's count"
            )


def _refuse_global_count_loading(text_config, parallel, counts: dict[int, int]) -> None:
    largest = max(counts.values())
    if parallel.enable_expert_parallel:
        raise UserError(
            f"{text_config.model_type} with different expert counts per layer ({_counts_text(counts)}) cannot use "
            f"expert parallelism (--enable-expert-parallel): vLLM's {text_config.model_type} loader slices every "
            f"layer's experts by the global count {largest}; start the engine without it (tensor parallelism "
            "splits every expert instead)"
        )
    quantization = (getattr(text_config, "quantization_config", None) or {}).get("quant_method")
    if quantization is not None:
        raise UserError(
            f"{text_config.model_type} with different expert counts per layer ({_counts_text(counts)}) and "
            f"{quantization} experts cannot be loaded by vLLM: its {quantization} loader reshapes every layer's "
            f"experts with the global count {largest}; write the pruned experts unquantized (bf16) instead "
            f"(moeprune prune --dequantize{' does that' if quantization == 'mxfp4' else ' reads MXFP4 only'}), "
            "or prune with allocation uniform"
        )
