"""A loopback stand-in for a vLLM server, and a real uvicorn socket to serve an app on, for bounds tests.

The stub records every body it receives (so a test can see what the gateway
forwarded), answers completions and chats with one short answer carrying
logprobs, and streams without end (bounded) when asked to stream, as a long
generation would. Check probes (prompt logprobs, self-consistency samples) can
be delayed to test the checks' own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from testkit.vllm_server import free_port

STREAM_FOR_S = 20.0  # a stream ends by itself after this long, so no test can hang on it
CHUNK_TEXT = "x" * 16_384  # big chunks: a reader that stops reading soon fills the socket buffers


@dataclass
class StubEngine:
    bodies: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    probe_delay_s: float = 0.0
    max_model_len: int | None = None  # listed at /v1/models when set, as vLLM does
    open_streams: int = 0

    def last(self) -> dict:
        return self.bodies[-1]

    def app(self) -> Starlette:
        async def health(request: Request):
            return JSONResponse({})

        async def models(request: Request):
            entry = {"id": "stub", "object": "model"}
            if self.max_model_len is not None:  # as vLLM lists it
                entry["max_model_len"] = self.max_model_len
            return JSONResponse({"object": "list", "data": [entry]})

        async def generate(request: Request):
            body = await request.json()
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
            chat = request.url.path.endswith("/chat/completions")
            # base_check asks for prompt logprobs; self-consistency resamples ask for n answers without logprobs.
            is_probe = body.get("prompt_logprobs") is not None or ((body.get("n") or 1) > 1 and "logprobs" not in body)
            if is_probe and self.probe_delay_s:
                await asyncio.sleep(self.probe_delay_s)
            if body.get("stream"):
                return StreamingResponse(self._stream(chat), media_type="text/event-stream")
            return JSONResponse(answer(body, chat))

        return Starlette(routes=[Route("/health", health), Route("/v1/models", models),
                                 Route("/v1/completions", generate, methods=["POST"]),
                                 Route("/v1/chat/completions", generate, methods=["POST"])])

    async def _stream(self, chat: bool):
        self.open_streams += 1
        try:
            deadline = time.monotonic() + STREAM_FOR_S
            while time.monotonic() < deadline:
                piece = {"delta": {"content": CHUNK_TEXT}} if chat else {"text": CHUNK_TEXT}
                chunk = {"id": "s", "object": "chunk", "created": 0, "model": "stub",
                         "choices": [{"index": 0, **piece, "logprobs": None, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
                await asyncio.sleep(0.05)
            yield b"data: [DONE]\n\n"
        finally:
            self.open_streams -= 1


def answer(body: dict, chat: bool) -> dict:
    n = body.get("n") or 1
    prompts = body.get("prompt") if isinstance(body.get("prompt"), list) and body["prompt"] and \
        isinstance(body["prompt"][0], (str, list)) else [None]
    choices = []
    for index in range(n * len(prompts)):
        if chat:
            logprobs = {"content": [{"token": "yes", "logprob": -0.1, "top_logprobs": [
                {"token": "yes", "logprob": -0.1}, {"token": "no", "logprob": -2.5}]}]}
            choices.append({"index": index, "message": {"role": "assistant", "content": "yes"},
                            "logprobs": logprobs, "finish_reason": "stop"})
        else:
            logprobs = {"tokens": ["yes"], "token_logprobs": [-0.1], "top_logprobs": [{"yes": -0.1, "no": -2.5}],
                        "text_offset": [0]}
            choices.append({"index": index, "text": "yes", "logprobs": logprobs, "finish_reason": "stop"})
    data = {"id": "cmpl-stub", "object": "chat.completion" if chat else "text_completion", "created": 0,
            "model": body.get("model"), "choices": choices,
            "usage": {"prompt_tokens": 3, "completion_tokens": len(choices), "total_tokens": 3 + len(choices)}}
    if body.get("prompt_logprobs") is not None:
        data["prompt_logprobs"] = [None, {"1": {"logprob": -0.3}}, {"2": {"logprob": -0.2}}]
    return data


@contextlib.contextmanager
def serve_app(app, timeout: float = 20) -> Iterator[str]:
    """Serve an ASGI app on a real loopback socket in a thread (lifespan on); yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
