"""A loopback engine that answers like vLLM with `--enable-return-routed-experts`, for the telemetry tests.

It routes each completion prompt through the tiny transformers model (the
router logits of every MoE layer, top-k) and returns the choice's
`routed_experts` encoded by vLLM's own `numpy2base64`, shape (tokens, layers,
top_k), uint8 as vLLM's capturer narrows it. One token is "generated", so, as
in vLLM (tokens - 1 routed rows), the rows are exactly the prompt's tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from vllm.utils.serial_utils import numpy2base64

from tests.app.stub_engine import read_json, send_json


class RoutingStub:
    def __init__(self, model_dir) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.top_k = self.model.config.num_experts_per_tok
        self.requests: list[dict] = []

    def routing(self, prompt: str) -> np.ndarray:
        ids = self.tokenizer(prompt, add_special_tokens=True, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = self.model(ids, output_router_logits=True).router_logits  # per layer: [tokens, experts]
        chosen = [layer.topk(self.top_k, dim=-1).indices for layer in logits]
        return torch.stack(chosen, dim=1).numpy().astype(np.uint8)  # [tokens, layers, top_k]

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        if scope["path"] == "/health":
            return await self._json(send, {})
        if scope["path"] == "/v1/models":
            return await self._json(send, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})
        request = await read_json(receive)
        self.requests.append(request)
        routed = self.routing(request["prompt"])
        await self._json(send, {
            "id": f"cmpl-{len(self.requests)}", "object": "text_completion", "created": 1, "model": "tiny",
            "choices": [{"index": 0, "text": " x", "logprobs": None, "finish_reason": "length",
                         "routed_experts": numpy2base64(routed)}],
            "usage": {"prompt_tokens": routed.shape[0], "completion_tokens": 1,
                      "total_tokens": routed.shape[0] + 1}})

    @staticmethod
    async def _json(send, payload: dict) -> None:
        await send_json(send, 200, payload)
