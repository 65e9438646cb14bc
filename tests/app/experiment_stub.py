"""A loopback OpenAI-shaped engine for experiment tests: a fresh completion id per answer, logprobs on demand.

Every answer carries a new `id` (as vLLM's do), so the gateway's id -> arm map
can be tested; `logprob` sets the one generated token's logprob, so a test
raises the `low_confidence` flag (mean logprob below -1.0) on this engine's
answers by setting it to e.g. -3.0 (fault injection). Served with
`tests.app.bounds_stub.serve_app` (a real uvicorn on loopback, in a thread).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

ANSWER = "zebra-answer-7"  # distinctive: a test can search the database for it


@dataclass
class ExperimentEngine:
    logprob: float = -0.05
    answered: int = 0

    def _choice(self, chat: bool) -> dict:
        if chat:
            logprobs = {"content": [{"token": ANSWER, "logprob": self.logprob,
                                     "top_logprobs": [{"token": ANSWER, "logprob": self.logprob}]}]}
            return {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "logprobs": logprobs,
                    "finish_reason": "stop"}
        logprobs = {"tokens": [ANSWER], "token_logprobs": [self.logprob], "top_logprobs": [{ANSWER: self.logprob}],
                    "text_offset": [0]}
        return {"index": 0, "text": ANSWER, "logprobs": logprobs, "finish_reason": "stop"}

    def app(self) -> Starlette:
        async def health(request: Request):
            return JSONResponse({})

        async def models(request: Request):
            return JSONResponse({"object": "list", "data": [{"id": "stub", "object": "model"}]})

        async def generate(request: Request):
            body = await request.json()
            chat = request.url.path.endswith("/chat/completions")
            self.answered += 1
            answer = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "chat.completion" if chat else "text_completion",
                      "created": 0, "model": body.get("model"), "choices": [self._choice(chat)],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
            if not body.get("stream"):
                return JSONResponse(answer)

            async def events():
                choice = self._choice(chat)
                if chat:
                    choice["delta"] = choice.pop("message")
                yield f"data: {json.dumps({**answer, 'choices': [choice], 'usage': None})}\n\n".encode()
                yield f"data: {json.dumps({**answer, 'choices': []})}\n\n".encode()
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/health", health), Route("/v1/models", models),
                                 Route("/v1/completions", generate, methods=["POST"]),
                                 Route("/v1/chat/completions", generate, methods=["POST"])])
