"""A loopback stand-in for a vLLM server with a tool parser, for the function-calling tests.

It records every body it receives. A request whose `tool_choice` names a
function gets a tool call of that function (as vLLM answers a named choice:
`content: null`, `finish_reason: "stop"`), streamed as vLLM streams it when
asked; anything else gets the text answer "yes".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

ARGUMENTS = '{"city": "Paris"}'
CALL_ID = "chatcmpl-tool-0123"
LOGPROBS = {"content": [{"token": "{", "logprob": -0.1, "top_logprobs": [{"token": "{", "logprob": -0.1}]}]}


def called_function(body: dict) -> str | None:
    choice = body.get("tool_choice")
    return choice["function"]["name"] if isinstance(choice, dict) else None


def tool_call_message(name: str) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": CALL_ID, "type": "function", "function": {"name": name, "arguments": ARGUMENTS}}]}


def stream_chunks(name: str) -> list[dict]:
    """vLLM's stream of a named tool call: the role, the call's id and name, the arguments in pieces, the end."""
    deltas = [{"role": "assistant", "content": ""},
              {"tool_calls": [{"index": 0, "id": CALL_ID, "type": "function",
                               "function": {"name": name, "arguments": ""}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": ARGUMENTS[:8]}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": ARGUMENTS[8:]}}]}]
    chunks = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None} for delta in deltas]
    chunks.append({"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"})
    return [{"id": "chat-s", "object": "chat.completion.chunk", "created": 0, "model": "stub", "choices": [c]}
            for c in chunks]


@dataclass
class ToolStub:
    bodies: list[dict] = field(default_factory=list)

    def app(self) -> Starlette:
        async def health(request: Request):
            return JSONResponse({})

        async def models(request: Request):
            return JSONResponse({"object": "list", "data": [{"id": "stub", "object": "model"}]})

        async def chat(request: Request):
            body = await request.json()
            self.bodies.append(body)
            name = called_function(body)
            if body.get("stream"):
                return StreamingResponse(self._stream(name or "none"), media_type="text/event-stream")
            message = tool_call_message(name) if name else {"role": "assistant", "content": "yes"}
            return JSONResponse({
                "id": "chat-1", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "message": message, "logprobs": LOGPROBS, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

        return Starlette(routes=[Route("/health", health), Route("/v1/models", models),
                                 Route("/v1/chat/completions", chat, methods=["POST"])])

    async def _stream(self, name: str):
        for chunk in stream_chunks(name):
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        usage = {"id": "chat-s", "object": "chat.completion.chunk", "created": 0, "model": "stub", "choices": [],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
        yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"
