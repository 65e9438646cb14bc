"""Routing telemetry: vLLM-encoded routed_experts from a loopback engine, counted by a real in-process gateway.

The engine (RoutingStub, below) routes each prompt through the tiny
transformers model and encodes the choice's `routed_experts` with vLLM's own
`numpy2base64`. The gateway's counts must equal what the project's
observation pass (a `frequency` prune over the same prompts) counts, and the
exported file must drive `moeprune prune --scores-in` to the same experts.
vLLM CPU cannot return routed experts (the flag needs Model Runner V2, which
needs Triton): a GPU engine is the real one.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import TYPE_CHECKING

import httpx
import pytest

from app.telemetry.npy import RoutedExpertsError, decode_routed_experts
from moeprune import cli
from moeprune.formats.manifest import PruningManifest
from moeprune.formats.statistics import VECTORS, ExpertStats
from pruning.pipeline import run_prune
from tests.app.pruned_copy import KEPT, make_pruned_copy
from tests.support.fake_engine import Answer, EngineConfig, FakeEngine, Request
from tests.support.loopback import served, wait_until

if TYPE_CHECKING:
    import numpy as np

pytestmark = pytest.mark.slow  # imports vLLM (its encoder) and runs two observation passes

PROMPTS = [
    "Metformin is a biguanide used to treat type 2 diabetes.",
    "Which organ does hepatitis affect? The liver.",
    "Paris is the capital of France and the symbol of gold is Au.",
    "The train to the coast leaves at nine every morning.",
]


class RoutingStub:
    """A loopback engine that answers like vLLM with `--enable-return-routed-experts` (the fake engine, scripted).

    It routes each completion prompt through the tiny transformers model (the router logits of every MoE layer,
    top-k) and returns the choice's `routed_experts` encoded by vLLM's own `numpy2base64`, shape (tokens,
    layers, top_k), uint8 as vLLM's capturer narrows it. One token is "generated", so, as in vLLM (tokens - 1
    routed rows), the rows are exactly the prompt's tokens.
    """

    def __init__(self, model_dir) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.top_k = self.model.config.num_experts_per_tok
        self.engine = FakeEngine(EngineConfig(model="tiny", answer=self.answer))

    def routing(self, prompt: str) -> np.ndarray:
        import numpy as np
        import torch

        ids = self.tokenizer(prompt, add_special_tokens=True, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = self.model(ids, output_router_logits=True).router_logits  # per layer: [tokens, experts]
        chosen = [layer.topk(self.top_k, dim=-1).indices for layer in logits]
        return torch.stack(chosen, dim=1).numpy().astype(np.uint8)  # [tokens, layers, top_k]

    def answer(self, request: Request) -> Answer:
        from vllm.utils.serial_utils import numpy2base64

        routed = self.routing(request.body["prompt"])
        return Answer(
            text=" x",
            finish_reason="length",
            prompt_tokens=routed.shape[0],
            choice_fields={"routed_experts": numpy2base64(routed)},
        )

    async def __call__(self, scope, receive, send):
        await self.engine(scope, receive, send)


@pytest.fixture(scope="module")
def stub(tiny_qwen3_moe):
    return RoutingStub(tiny_qwen3_moe)


def telemetry_config(tiny, pruned_dir, stub_url: str) -> dict:
    return {
        "variants": {
            "base": {
                "url": stub_url,
                "served_model_name": "tiny",
                "telemetry": {"routed_experts": True, "label": "clinical-app", "config": str(tiny / "config.json")},
            },
            "pruned": {
                "url": stub_url,
                "served_model_name": "tiny",
                "base": "base",
                "telemetry": {"manifest": str(pruned_dir / "pruning.json")},
            },
        }
    }


async def telemetry_gateway(config: dict):
    from app.config.settings import Settings
    from app.config.variants import parse_config
    from app.main import create_app

    return create_app(Settings(health_interval_s=0.2), parse_config(config))


async def test_gateway_counts_equal_the_observation_pass_and_drive_prune_to_the_same_experts(
    stub, tiny_qwen3_moe, tmp_path
):
    pruned = make_pruned_copy(tiny_qwen3_moe, tmp_path / "pruned")
    async with served(stub) as stub_url:
        app = await telemetry_gateway(telemetry_config(tiny_qwen3_moe, pruned, stub_url))
        async with served(app) as url, httpx.AsyncClient(timeout=60) as client:
            assert await wait_until(lambda: app.state.gateway.backends["base"].up, timeout=20)
            for prompt in PROMPTS:
                answer = (
                    await client.post(
                        url + "/v1/completions", json={"model": "base", "prompt": prompt, "max_tokens": 1}
                    )
                ).json()
                assert "routed_experts" not in answer["choices"][0]  # stripped: the client did not ask
            kept = (
                await client.post(
                    url + "/v1/completions",
                    json={"model": "base", "prompt": PROMPTS[0], "max_tokens": 1},
                    headers={"x-moe-routed-experts": "keep"},
                )
            ).json()
            routed = decode_routed_experts(kept["choices"][0]["routed_experts"])
            assert list(routed.ids) == stub.routing(PROMPTS[0]).flatten().tolist()
            out = tmp_path / "stats.json"
            code = await asyncio.to_thread(
                cli.main,
                [
                    "traffic",
                    "export",
                    "--gateway",
                    url,
                    "--variant",
                    "base",
                    "--label",
                    "clinical-app",
                    "--out",
                    str(out),
                ],
            )
            assert code == 0
            hit_ratio = app.state.gateway.metrics.registry.get_sample_value(
                "moeprune_pruned_expert_hit_ratio", {"variant": "pruned"}
            )
    # The observation pass of `moeprune prune` over the same prompts (PROMPTS[0] was sent twice).
    calibration = tmp_path / "prompts.jsonl"
    calibration.write_text("".join(json.dumps({"text": p}) + "\n" for p in [*PROMPTS, PROMPTS[0]]))
    observed_file = tmp_path / "observed.json"
    by_pass = run_prune(
        tiny_qwen3_moe,
        tmp_path / "by-pass",
        method="frequency",
        ratio=0.5,
        calibration=[calibration],
        samples=len(PROMPTS) + 1,
        max_tokens=512,
        batch_tokens=1,
        scores_out=observed_file,
        dtype="float32",
        progress=False,
        domain_gate=False,
    )
    observed, exported = ExpertStats.load(observed_file), ExpertStats.load(out)
    for layer, stats in observed.layers.items():
        assert exported.layers[layer].counts == stats.counts and exported.layers[layer].tokens == stats.tokens
    by_traffic = run_prune(
        tiny_qwen3_moe, tmp_path / "by-traffic", method="frequency", ratio=0.5, scores_in=out, progress=False
    )
    assert PruningManifest.load(by_traffic).kept_experts == PruningManifest.load(by_pass).kept_experts
    # The drift gauge: the share of routed pairs on the experts the pruned copy removed.
    rows = [stub.routing(p) for p in [*PROMPTS, PROMPTS[0]]]
    pairs = sum(r.size for r in rows)
    hits = sum(
        int(expert not in KEPT[layer])
        for r in rows
        for row in r
        for layer, experts in enumerate(row)
        for expert in experts
    )
    assert hit_ratio == pytest.approx(hits / pairs) and 0 < hit_ratio < 1


async def test_the_export_holds_counts_only(stub, tiny_qwen3_moe, tmp_path):
    pruned = make_pruned_copy(tiny_qwen3_moe, tmp_path / "pruned")
    secret = "Patient Jane Roe, 54, takes warfarin"
    async with served(stub) as stub_url:
        app = await telemetry_gateway(telemetry_config(tiny_qwen3_moe, pruned, stub_url))
        async with served(app) as url, httpx.AsyncClient(timeout=60) as client:
            assert await wait_until(lambda: app.state.gateway.backends["base"].up, timeout=20)
            idle = app.state.gateway.metrics.registry.get_sample_value(
                "moeprune_pruned_expert_hit_ratio", {"variant": "pruned"}
            )
            await client.post(
                url + "/v1/completions",
                json={"model": "base", "prompt": secret, "max_tokens": 1, "user": "jane-roe-123"},
            )
            exported = (await client.get(url + "/v1/telemetry/routing", params={"variant": "base"})).json()
            unknown = await client.get(url + "/v1/telemetry/routing", params={"variant": "pruned"})
    assert math.isnan(idle)  # no traffic in the window: no data, not "no drift"
    text = json.dumps(exported)
    assert not any(word.lower() in text.lower() for word in ["Jane", "Roe", "warfarin", "jane-roe-123", "Patient"])
    assert set(exported) == {
        "schema",
        "schema_version",
        "model_type",
        "num_experts",
        "top_k",
        "ean_max_tokens",
        "source",
        "calibration",
        "layers",
    }
    assert exported["source"] == {"gateway_traffic": {"variant": "base", "label": None, "responses": 1}}
    for layer in exported["layers"].values():
        assert all(isinstance(v, float) and v == int(v) for v in layer["counts"]) and sum(layer["counts"]) > 0
        assert all(layer[name] == [0.0] * 8 for name in VECTORS if name != "counts")
    assert unknown.status_code == 404 and "no routing telemetry" in unknown.json()["error"]["message"]


@pytest.mark.parametrize("payload, problem", [("@@@", "not base64"), ("AAAA", "not a .npy payload")])
def test_a_malformed_payload_is_refused_clearly(payload, problem):
    with pytest.raises(RoutedExpertsError, match=problem):
        decode_routed_experts(payload)


def test_vllm_encodings_of_every_width_decode(tiny_qwen3_moe):
    import numpy as np
    from vllm.utils.serial_utils import numpy2base64

    for dtype in (np.uint8, np.uint16, np.int32):
        array = np.arange(2 * 3 * 4, dtype=dtype).reshape(2, 3, 4)
        routed = decode_routed_experts(numpy2base64(array))
        assert (routed.tokens, routed.layers, routed.top_k) == (2, 3, 4)
        assert list(routed.layer_column(1, 2)) == array[:, 1, 2].tolist()
