"""A real vLLM CPU engine serves an uneven checkpoint through this package's plugin (issue 21).

The engine finds the plugin the way an installed package offers it: through the
`vllm.general_plugins` entry point (a stand-in dist-info on its PYTHONPATH,
`testkit/vllm_plugin_env.py`, because the shared test environment must not be
reinstalled). Its greedy tokens must equal transformers' on the same checkpoint, whose
exactness against the source is `tests/pruning/test_uneven.py`. One engine per family
(~1 min each on the 2-core machine).
"""

from pathlib import Path

import httpx
import pytest
import torch

from moeprune.formats.checkpoint import load_config
from moeprune.formats.expert_counts import layer_counts
from moeprune.formats.families import family_for
from moeprune.formats.uneven_serving import NOT_SERVABLE_UNEVEN
from pruning.writer import write_pruned
from testkit.tiny_models import auto_model_class, build_tiny_model
from testkit.vllm_plugin_env import plugin_pythonpath
from testkit.vllm_server import vllm_server
from tests.pruning.test_uneven import UNEVEN_FAMILIES, kept_counts, uneven_kept
from tests.pruning.test_vllm_load import STANDINS

# family -> (dtype, extra PYTHONPATH entries, server args). vLLM CPU runs Qwen3.5's gated-delta-net layers in bf16 only,
# and its Qwen3.5 model file imports torchvision (a stand-in here, as for the stock model). deepseek_v3 is not
# served uneven at all (NOT_SERVABLE_UNEVEN: vLLM 0.32 refuses heterogeneous MLA models).
SERVED = {
    "qwen3_5_moe_text": ("bfloat16", [STANDINS], []),
    "qwen3_5_moe": ("bfloat16", [STANDINS], ["--language-model-only"]),
}
# Families whose vLLM CPU path computes what transformers does up to fp32 rounding: greedy ids must be equal.
# The others (bf16) are compared by log-probabilities.
SAME_GREEDY_IDS = {"qwen3_moe", "olmoe", "qwen2_moe", "mixtral", "gpt_oss"}

PROMPT = "Metformin is a biguanide used to treat"
NEW_TOKENS = 6
# bf16 engines: vLLM's and transformers' kernels round differently, so greedy ids may part at a near-tie.
# Each of vLLM's tokens must be transformers' best or within BF16_NATS of it, with vLLM's log-probability
# within BF16_NATS of transformers' (fp32, teacher-forced on vLLM's tokens). Measured on the tiny Qwen3.5:
# vLLM vs transformers <= 0.002 nats per token; the unpruned source vs the pruned model 0.019 to 0.13.
BF16_NATS = 0.01


def transformers_greedy(path: Path, prompt_ids: list[int]) -> list[int]:
    import moeprune.models  # noqa: F401  (registers the uneven classes)

    model = auto_model_class(load_config(path)["model_type"]).from_pretrained(path, dtype=torch.float32).eval()
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt_ids) :]


def transformers_log_probs(path: Path, prompt_ids: list[int], continuation: list[int]) -> torch.Tensor:
    """[len(continuation), vocab] fp32 log-probabilities of each next token, teacher-forced on `continuation`."""
    import moeprune.models  # noqa: F401

    model = auto_model_class(load_config(path)["model_type"]).from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + continuation])).logits[0]
    return torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", [family for family in UNEVEN_FAMILIES if family not in NOT_SERVABLE_UNEVEN])
def test_vllm_serves_the_uneven_checkpoint_like_transformers(model_type, tiny_model_factory, tmp_path):
    from transformers import AutoTokenizer

    dtype, extra_path, args = SERVED.get(model_type, ("float32", [], []))
    source = (
        tiny_model_factory(model_type)
        if dtype == "float32"
        else build_tiny_model(model_type, tmp_path / "source", dtype=dtype)
    )
    path = write_pruned(source, tmp_path / "uneven", uneven_kept(model_type), {})
    config = load_config(path)
    assert layer_counts(family_for(config), config) == kept_counts(model_type)
    prompt_ids = AutoTokenizer.from_pretrained(path).encode(PROMPT)
    scratch = tmp_path / "engine"
    scratch.mkdir()
    with vllm_server(
        path,
        scratch,
        served_name="uneven",
        dtype=dtype,
        max_model_len=256,
        args=args,
        env={"PYTHONPATH": plugin_pythonpath(scratch, *extra_path)},
        timeout=600,
    ) as url:
        reply = httpx.post(
            f"{url}/v1/completions",
            timeout=120,
            json={
                "model": "uneven",
                "prompt": prompt_ids,
                "max_tokens": NEW_TOKENS,
                "temperature": 0,
                "ignore_eos": True,
                "logprobs": 1,
                "return_tokens_as_token_ids": True,
            },
        ).json()
    log = (scratch / "engine.log").read_text()
    assert f"Resolved architecture: {config['architectures'][0]}" in log
    ids = [int(token.split(":")[1]) for token in reply["choices"][0]["logprobs"]["tokens"]]
    if model_type in SAME_GREEDY_IDS:
        assert ids == transformers_greedy(path, prompt_ids)
        return
    expected = transformers_log_probs(path, prompt_ids, ids)
    chosen = expected[torch.arange(len(ids)), torch.tensor(ids)]
    served = torch.tensor(reply["choices"][0]["logprobs"]["token_logprobs"])
    report = f"vLLM {ids} {served.tolist()}; transformers best {expected.max(-1).values.tolist()}, {chosen.tolist()}"
    assert (expected.max(-1).values - chosen).max() <= BF16_NATS, report
    assert (served - chosen).abs().max() <= BF16_NATS, report


@pytest.mark.slow
def test_stock_vllm_without_the_plugin_refuses_the_renamed_architecture(tiny_model_factory, tmp_path):
    """Without the plugin the engine stops at the architecture, before building anything at a wrong count.

    `scripts/setup.sh` installs this package, so its entry point is in the test environment: the allowlist
    `VLLM_PLUGINS` (vLLM loads only the general plugins it names) stands for an environment without it."""
    path = write_pruned(tiny_model_factory("qwen3_moe"), tmp_path / "uneven", uneven_kept("qwen3_moe"), {})
    with pytest.raises(RuntimeError, match="vLLM exited"):
        with vllm_server(
            path,
            tmp_path / "engine",
            served_name="uneven",
            dtype="float32",
            max_model_len=256,
            env={"VLLM_PLUGINS": "no-plugin-allowed"},
            timeout=600,
        ):
            pass
    log = (tmp_path / "engine" / "engine.log").read_text()
    assert "Model architectures ['Qwen3MoePrunedForCausalLM'] are not supported" in log
