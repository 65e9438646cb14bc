"""One configurable fake of a vLLM OpenAI server for the tests: canned or scripted answers, failures on cue.

It replaced seven fakes (issue 23); what the tests need of it is their union:
- `GET /health`: 200. `GET /v1/models`: its one model id, with `max_model_len` when set (as vLLM lists its
  context). With `api_key` set, every `/v1` path wants `Authorization: Bearer <key>` and answers 401 without
  it, as `vllm serve` does with `VLLM_API_KEY`.
- `POST /v1/completions` and `/v1/chat/completions`, streamed or not, in vLLM's shapes: a fresh completion id
  per answer (unless the answer pins one), one choice per prompt of a batch and per `n` (self-consistency
  resamples), token logprobs in each endpoint's own shape (`tokens` / `token_logprobs` / `top_logprobs` /
  `text_offset`, or `content` entries), `prompt_logprobs` when asked (the base cross-check), usage, tool
  calls (`content: null` and the call; streamed as vLLM streams a named call: the role, the call's id and
  name, the arguments in pieces, the end), any extra choice field (vLLM's `routed_experts`), and any extra
  field of a whole chat answer's message (a reasoning parser's `reasoning_content`).
- Scripted per-request answers: `EngineConfig.rules`, each a predicate on the request and the answer it gets
  (an `Answer`, or a function of the request for answers computed from it), tried in order before the
  default answer.
- Failures on cue, all fields of `Answer`: a status and its body (a 500 with internal details in it, vLLM's
  400 for too long a prompt), a delay before the response headers (an engine busy before it answers), a
  generation that lasts (a stream that ticks or floods for N seconds; a non-streamed answer that only comes
  then), an engine error event mid-stream (vLLM's when its engine core dies). `CANNOT_SCORE` as the answer
  to `Request.scores` plays an endpoint that gives no prompt logprobs and no echo.
- What tests assert on: every request it got (`requests`, with `bodies` and `calls` as views), requests in
  progress (`active`), those that ended because the client hung up (`cancelled`), streams in progress
  (`open_streams`). With `close_connections`, every answer carries `Connection: close`, so an ESTABLISHED
  connection to it is one still in use and a leaked one can be counted.
- As a process, the gateway's launcher in supervision tests (`python tests/support/fake_engine.py --port N`):
  vLLM's flags (`--host`, `--port`, `--served-model-name`; the rest ignored), `VLLM_API_KEY`, and switches
  through the environment (a variant's `engine.env`):
    FAKE_ENGINE_ENV_DUMP=path    write {"environ": ..., "argv": ..., "pid": ...} there at start
    FAKE_ENGINE_IGNORE_TERM=1    ignore SIGTERM (only SIGKILL ends it), children too
    FAKE_ENGINE_CHILD=path       start a child in the same process group, write its pid there
    FAKE_ENGINE_LOG_BYTES=n      print n bytes of log lines at start
  For that, this module imports only the standard library at import time (uvicorn when it serves).

A test may change `engine.config` (or its fields) while the engine serves; the next request sees the change:
that is how a fault is injected mid-test. Serve it on loopback with tests/support/loopback.py.

Two engines are not this one, on purpose: `testkit/fast_engine.py`, the benchmark's stub, is raw asyncio with
answers built once at start, so that a benchmark in front of it measures the gateway and not the stub (this
engine parses, records and renders every request, through uvicorn); and the raw-socket engine of
tests/app/serving/test_keepalive.py closes a pooled connection without a byte of answer, which no ASGI app can.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
ANSWER = "zebra-answer-7"  # the default answer's text; distinctive, so a test can search a database or log for it


@dataclass(frozen=True)
class Token:
    """One generated token with its logprob and the alternatives vLLM lists (`top_logprobs`), best first."""

    text: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as the engine's tool parser hands it on
    id: str = "chatcmpl-tool-0123"


@dataclass(frozen=True)
class Answer:
    """What the engine answers to one request: content, shape, timing and failure."""

    text: str = ANSWER
    tokens: tuple[Token, ...] = ()  # the answer's token logprobs, sent on every answer; empty: `logprobs: null`
    pieces: tuple[str, ...] = ()  # what a stream sends, piece i with tokens[i] (default: the text in one piece)
    finish_reason: str = "stop"
    prompt_tokens: int = 3  # usage.prompt_tokens
    prompt_logprobs: tuple[float, ...] = (-0.3, -0.2)  # sent when the request asks for prompt logprobs
    tool_call: ToolCall | None = None
    message_fields: Mapping[str, Any] = field(default_factory=dict)  # extra fields of a whole chat answer's message
    choice_fields: Mapping[str, Any] = field(default_factory=dict)  # extra fields of every choice
    id: str | None = None  # the completion id; None: a fresh one per answer, as vLLM's (the gateway maps them)
    status: int = 200
    body: dict | None = None  # the JSON body of a non-200 answer
    error_event: dict | None = None  # a stream ends with this event after its pieces, unfinished
    delay_s: float = 0.0  # before the response headers
    lasts_s: float = 0.0  # a long generation: a stream repeats its pieces (every interval_s) this long;
    interval_s: float = 0.0  # ... a non-streamed answer comes only after it


def one_token(text: str, logprob: float) -> Answer:
    """An answer of one token, its own only alternative: confident at -0.05, unsure at -3.0."""
    return Answer(text=text, tokens=(Token(text, logprob, ((text, logprob),)),))


DEFAULT_ANSWER = one_token(ANSWER, -0.05)


# Failures as vLLM shows them. A 500 whose body leaks internals (the gateway must not pass them on):
SECRET_DETAIL = "Traceback at /opt/internal/engine.py on http://10.1.2.3:8000"
ENGINE_500 = Answer(status=500, body={"error": {"message": SECRET_DETAIL, "code": 500}})
# The event vLLM's stream ends with when its engine core dies mid-generation:
ENGINE_CORE_DIED = {
    "error": {
        "message": "EngineCore encountered an issue. See /var/log/x for details.",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
}
# An endpoint that cannot score (no prompt logprobs, no echo): the answer to `Request.scores` requests in a
# rule, so the evaluators mark option log-likelihood and the base cross-check unavailable.
CANNOT_SCORE = Answer(status=400, body={"error": {"message": "prompt logprobs are not supported"}})


@dataclass(frozen=True)
class Request:
    """One completion request as the engine got it (header names in lower case)."""

    path: str
    headers: dict[str, str]
    body: dict

    @property
    def chat(self) -> bool:
        return self.path == CHAT

    @property
    def scores(self) -> bool:
        """A scoring request: it asks for prompt logprobs (chat, the base cross-check) or an echo (completions)."""
        return "prompt_logprobs" in self.body or bool(self.body.get("echo"))

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def text(self) -> str:
        """What a script matches on: the prompt (JSON for token ids or a batch), or a chat's user turns."""
        if self.chat:
            return " ".join(str(m.get("content")) for m in self.body.get("messages") or () if m.get("role") == "user")
        prompt = self.body.get("prompt")
        return prompt if isinstance(prompt, str) else json.dumps(prompt)

    @property
    def named_function(self) -> str | None:
        choice = self.body.get("tool_choice")
        return choice["function"]["name"] if isinstance(choice, dict) else None

    @property
    def choices(self) -> int:
        """vLLM's count: `n` per prompt, for every prompt of a batch."""
        prompt = self.body.get("prompt")
        batch = len(prompt) if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)) else 1
        return (self.body.get("n") or 1) * batch


def says(word: str) -> Callable[[Request], bool]:
    """A rule's predicate: the prompt (or a user turn) holds `word`."""
    return lambda request: word in request.text


@dataclass(frozen=True)
class Rule:
    when: Callable[[Request], bool]
    answer: Answer | Callable[[Request], Answer]


@dataclass
class EngineConfig:
    model: str = "stub"  # the id /v1/models lists, and the answers' model when a request names none
    max_model_len: int | None = None  # listed at /v1/models when set, as vLLM lists its context
    api_key: str | None = None  # every /v1 path wants it as a bearer token (vLLM's VLLM_API_KEY)
    answer: Answer | Callable[[Request], Answer] = DEFAULT_ANSWER
    rules: list[Rule] = field(default_factory=list)  # tried in order before `answer`
    close_connections: bool = False  # `Connection: close` on every answer

    def answer_to(self, request: Request) -> Answer:
        chosen = next((rule.answer for rule in self.rules if rule.when(request)), self.answer)
        return chosen(request) if callable(chosen) else chosen


# --- rendering: vLLM's JSON shapes --------------------------------------------------------------------------


def logprobs_of(tokens: tuple[Token, ...], chat: bool) -> dict | None:
    if not tokens:
        return None
    if chat:
        return {
            "content": [
                {
                    "token": t.text,
                    "logprob": t.logprob,
                    "top_logprobs": [{"token": text, "logprob": lp} for text, lp in t.top],
                }
                for t in tokens
            ]
        }
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) for t in tokens],
        "text_offset": offsets,
    }


def message_of(answer: Answer) -> dict:
    if answer.tool_call is None:
        return {"role": "assistant", "content": answer.text, **answer.message_fields}
    call = answer.tool_call
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        ],
    }


def usage_of(answer: Answer, choices: int) -> dict:
    completion = max(1, len(answer.tokens)) * choices
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": answer.prompt_tokens + completion,
    }


def head_of(answer: Answer, request: Request, model: str, chunk: bool) -> dict:
    prefix, kind = ("chatcmpl", "chat.completion") if request.chat else ("cmpl", "text_completion")
    kind = kind + ".chunk" if chunk and request.chat else kind
    return {
        "id": answer.id or f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": 1,
        "model": request.body.get("model") or model,
    }


def completion_of(answer: Answer, request: Request, model: str) -> dict:
    """The whole (non-streamed) answer."""
    logprobs = logprobs_of(answer.tokens, request.chat)
    content = {"message": message_of(answer)} if request.chat else {"text": answer.text}
    choices = [
        {"index": index, **content, "logprobs": logprobs, "finish_reason": answer.finish_reason, **answer.choice_fields}
        for index in range(request.choices)
    ]
    data = {**head_of(answer, request, model, chunk=False), "choices": choices, "usage": usage_of(answer, len(choices))}
    if request.body.get("prompt_logprobs") is not None:
        data["prompt_logprobs"] = [None] + [
            {str(i + 1): {"logprob": lp, "rank": 1}} for i, lp in enumerate(answer.prompt_logprobs)
        ]
    return data


def tool_call_deltas(call: ToolCall) -> list[dict]:
    """vLLM's stream of a named call: the role, the call's id and name, the arguments in two pieces."""
    half = len(call.arguments) // 2
    return [
        {"role": "assistant", "content": ""},
        {
            "tool_calls": [
                {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": call.arguments[:half]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": call.arguments[half:]}}]},
    ]


def piece_chunks(answer: Answer, request: Request, head: dict, rounds: Iterable[object]) -> Iterator[dict]:
    """The content chunks of a stream, one per piece and choice; `rounds` says how often the pieces go out."""
    pieces = answer.pieces or (answer.text,)
    finishes = answer.error_event is None and not answer.lasts_s
    for _ in rounds:
        for number, piece in enumerate(pieces):
            token = answer.tokens[number : number + 1]
            finish = answer.finish_reason if finishes and number == len(pieces) - 1 else None
            content = {"delta": {"content": piece}} if request.chat else {"text": piece}
            choices = [
                {
                    "index": index,
                    **content,
                    "logprobs": logprobs_of(token, request.chat),
                    "finish_reason": finish,
                    **answer.choice_fields,
                }
                for index in range(request.choices)
            ]
            yield {**head, "choices": choices}


def stream_chunks(answer: Answer, request: Request, model: str = "stub", head: dict | None = None) -> list[dict]:
    """The chunks of a finished stream before the usage chunk (what a test compares a forwarded stream with)."""
    head = head or head_of(answer, request, model, chunk=True)
    if answer.tool_call is not None:
        deltas = [*tool_call_deltas(answer.tool_call), {}]
        return [
            {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": answer.finish_reason if not delta else None,
                    }
                ],
            }
            for delta in deltas
        ]
    return list(piece_chunks(answer, request, head, [0]))


def sse(data: dict) -> bytes:
    # ensure_ascii=False: vLLM leaves U+2028 and friends unescaped inside JSON strings.
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


# --- the ASGI app -------------------------------------------------------------------------------------------

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]


class FakeEngine:
    """The engine as an ASGI app; `config` says how it answers and may change while it serves."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.requests: list[Request] = []
        self.active = 0
        self.cancelled = 0
        self.open_streams = 0

    @property
    def bodies(self) -> list[dict]:
        return [request.body for request in self.requests]

    @property
    def calls(self) -> list[tuple[str, dict[str, str]]]:
        return [(request.path, request.headers) for request in self.requests]

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        if scope["type"] != "http":
            return None
        path, config = scope["path"], self.config
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        if path == "/health":
            return await self._json(send, 200, {})
        if path.startswith("/v1/") and config.api_key and headers.get("authorization") != f"Bearer {config.api_key}":
            return await self._json(send, 401, {"error": "Unauthorized"})
        if path == "/v1/models":
            entry: dict[str, Any] = {"id": config.model, "object": "model"}
            if config.max_model_len is not None:
                entry["max_model_len"] = config.max_model_len
            return await self._json(send, 200, {"object": "list", "data": [entry]})
        if scope["method"] != "POST" or path not in (COMPLETIONS, CHAT):
            return await self._json(send, 404, {"error": {"message": f"no route {path}", "code": 404}})
        request = Request(path, headers, await read_json(receive))
        self.requests.append(request)
        await self._answer_unless_gone(request, receive, send)

    async def _answer_unless_gone(self, request: Request, receive: Receive, send: Send) -> None:
        """Answer, racing the client: a request whose client hangs up first counts as `cancelled`."""
        self.active += 1
        work = asyncio.ensure_future(self._answer(request, send))
        gone = asyncio.ensure_future(wait_disconnect(receive))
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                self.cancelled += 1
        finally:
            for task in (work, gone):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.active -= 1

    async def _answer(self, request: Request, send: Send) -> None:
        answer, model = self.config.answer_to(request), self.config.model
        await asyncio.sleep(answer.delay_s)
        if answer.status != 200:
            return await self._json(send, answer.status, answer.body or {})
        if not request.stream:
            await asyncio.sleep(answer.lasts_s)
            return await self._json(send, 200, completion_of(answer, request, model))
        await self._start(send, 200, b"text/event-stream")
        self.open_streams += 1
        try:
            async for data in self._events(answer, request, model):
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.open_streams -= 1

    async def _events(self, answer: Answer, request: Request, model: str):
        head = head_of(answer, request, model, chunk=True)
        if answer.lasts_s:
            deadline = time.monotonic() + answer.lasts_s
            for chunk in piece_chunks(answer, request, head, iter(lambda: time.monotonic() < deadline, False)):
                yield sse(chunk)
                await asyncio.sleep(answer.interval_s)
        else:
            for chunk in stream_chunks(answer, request, model, head):
                yield sse(chunk)
        if answer.error_event is not None:
            yield sse(answer.error_event)
        yield sse({**head, "choices": [], "usage": usage_of(answer, request.choices)})
        yield b"data: [DONE]\n\n"

    async def _start(self, send: Send, status: int, content_type: bytes) -> None:
        headers = [(b"content-type", content_type)]
        if self.config.close_connections:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def _json(self, send: Send, status: int, payload: dict) -> None:
        await self._start(send, status, b"application/json")
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def read_json(receive: Receive) -> dict:
    """The whole ASGI request body, parsed as JSON."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return json.loads(body)


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# --- as a process: the gateway's launcher in supervision tests ----------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="fake")
    args, _ = parser.parse_known_args()
    if dump := os.environ.get("FAKE_ENGINE_ENV_DUMP"):
        with open(dump, "w") as handle:
            json.dump({"environ": dict(os.environ), "argv": sys.argv, "pid": os.getpid()}, handle)
    ignore = bool(os.environ.get("FAKE_ENGINE_IGNORE_TERM"))
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if child_file := os.environ.get("FAKE_ENGINE_CHILD"):
        code = "import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore else "")
        child = subprocess.Popen([sys.executable, "-c", code + "time.sleep(600)"])
        with open(child_file, "w") as handle:
            handle.write(str(child.pid))
    if log_bytes := int(os.environ.get("FAKE_ENGINE_LOG_BYTES", "0")):
        line = b"INFO fake engine log line " + b"x" * 73 + b"\n"  # 100 bytes
        for _ in range(log_bytes // len(line)):
            sys.stdout.buffer.write(line)
        sys.stdout.flush()
    engine = FakeEngine(EngineConfig(model=args.served_model_name, api_key=os.environ.get("VLLM_API_KEY")))
    print(f"fake engine serving {args.served_model_name} on {args.host}:{args.port}", flush=True)
    serve_forever(engine, args.host, args.port)


def serve_forever(app: FakeEngine, host: str, port: int) -> None:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, http="h11", loop="asyncio", lifespan="off", log_level="warning", access_log=False
        )
    )
    # Signals keep their default (or the ignored SIGTERM above): uvicorn's own handlers would turn a
    # SIGTERM into a graceful exit, and supervision tests need an engine that dies, or ignores it, as told.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
