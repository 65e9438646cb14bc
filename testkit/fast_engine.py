"""A fast OpenAI-shaped stub engine for gateway benchmarks: raw asyncio, HTTP/1.1 keep-alive, canned answers.

It answers in tens of microseconds of CPU, so that what a benchmark measures in
front of it is the gateway's cost, not the engine's:

- `GET /health`: 200, empty;
- `GET /v1/models`: the one model name it serves (with `max_model_len`);
- `POST /v1/chat/completions`: a fixed `TOKENS`-token answer with top-5 logprobs
  on every token, built once at start; with `"stream": true` in the body, an SSE
  stream of `max_tokens` chunks (at most `--stream-tokens`; one token and its
  top-5 logprobs each, every chunk its own write), then the finish and usage
  chunks and `data: [DONE]`;
- anything else: 404 (logged to stderr, so a peer that expects more shows up).

Not a test double for behaviour (see tests/support/fake_engine.py for that): no
validation, no errors, no disconnect handling beyond closing.

    python -m testkit.fast_engine --port 8001 [--model stub] [--stream-tokens 256]

It takes (and ignores) the rest of vLLM's flags, so a variant may launch it as its engine
(`launcher: python -m testkit.fast_engine`, tests/app/workers); `--unique-ids` numbers the
chat answers' ids (the bytes stay the same length) where a test needs to tell answers apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys

TOKENS = 8
TOP = 5
WORDS = ("The", " pancreas", " produces", " insulin", " in", " beta", " cells", ".")
MAX_HEAD = 64 * 1024


def _logprob_entry(index: int) -> dict:
    word = WORDS[index % len(WORDS)]
    top = [{"token": word, "logprob": -0.05 - 0.01 * index, "bytes": list(word.encode())}]
    for rank in range(1, TOP):
        alternative = f" alt{rank}"
        top.append({"token": alternative, "logprob": -2.0 - rank - 0.1 * index, "bytes": list(alternative.encode())})
    return {"token": word, "logprob": top[0]["logprob"], "bytes": top[0]["bytes"], "top_logprobs": top}


def _dumps(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def chat_answer(model: str) -> bytes:
    """The non-streaming answer's body: TOKENS tokens, each with its top-5 logprobs."""
    entries = [_logprob_entry(i) for i in range(TOKENS)]
    return _dumps(
        {
            "id": "chatcmpl-fast-stub",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(e["token"] for e in entries)},
                    "logprobs": {"content": entries},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": TOKENS, "total_tokens": 12 + TOKENS},
        }
    )


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE event."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def stream_head() -> dict:
    return {"id": "chatcmpl-fast-stub", "object": "chat.completion.chunk", "created": 1700000000}


def stream_events(model: str, count: int) -> list[bytes]:
    """The JSON data of one SSE event per token, for `count` tokens (bench/stream_growth.py feeds these to the
    gateway's relay in-process)."""
    events = []
    for index in range(count):
        entry = _logprob_entry(index)
        delta = {"content": entry["token"]} if index else {"role": "assistant", "content": entry["token"]}
        choice = {"index": 0, "delta": delta, "logprobs": {"content": [entry]}, "finish_reason": None}
        events.append(_dumps({**stream_head(), "model": model, "choices": [choice]}))
    return events


def stream_chunks(model: str, count: int) -> list[bytes]:
    """One HTTP chunk per token, for up to `count` tokens."""
    return [_chunk(event) for event in stream_events(model, count)]


def stream_tail_events(model: str, tokens: int) -> list[bytes]:
    """After `tokens` tokens: the data of the finish and usage events and [DONE]."""
    head = {**stream_head(), "model": model}
    finish = {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]}
    usage = {
        **head,
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens},
    }
    return [_dumps(finish), _dumps(usage), b"[DONE]"]


def stream_tail(model: str, tokens: int) -> bytes:
    """After `tokens` tokens: the finish and usage chunks, [DONE] and the last (empty) HTTP chunk."""
    return b"".join(_chunk(event) for event in stream_tail_events(model, tokens)) + b"0\r\n\r\n"


def _response(status: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Answers:
    """Every byte the stub ever sends, built once."""

    def __init__(self, model: str, stream_tokens: int, unique_ids: bool = False) -> None:
        # A random start: two stubs (two variants of one gateway) do not hand out the same ids.
        self.unique_ids, self.answered = unique_ids, secrets.randbelow(10**9)
        self.health = _response(b"200 OK", b"")
        self.models = _response(
            b"200 OK",
            _dumps(
                {
                    "object": "list",
                    "data": [
                        {
                            "id": model,
                            "object": "model",
                            "created": 1700000000,
                            "owned_by": "fast-stub",
                            "max_model_len": 4096,
                        }
                    ],
                }
            ),
        )
        self.chat = _response(b"200 OK", chat_answer(model))
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        self.model = model
        self.stream = stream_chunks(model, stream_tokens)
        self._tails: dict[int, bytes] = {}
        self.not_found = _response(b"404 Not Found", b'{"error":{"message":"not found"}}')

    def next_chat(self) -> bytes:
        """The chat answer; with unique ids, its id numbered (same length: Content-Length holds)."""
        if not self.unique_ids:
            return self.chat
        self.answered += 1
        return self.chat.replace(b'"chatcmpl-fast-stub"', b'"chatcmpl-%09d"' % (self.answered % 10**9), 1)

    def tail(self, tokens: int) -> bytes:
        tail = self._tails.get(tokens)
        if tail is None:
            tail = self._tails[tokens] = stream_tail(self.model, tokens)
        return tail


class StubProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, requests answered in order; bodies framed by Content-Length only."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.streaming = False  # a stream in progress: later requests wait in the buffer

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.streaming:
            self._serve()

    def connection_lost(self, exc) -> None:
        self.transport = None

    def _serve(self) -> None:
        while self.transport is not None and not self.streaming:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return
            head = self.buffer[:end]
            length = 0
            lowered = head.lower()
            at = lowered.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lowered.find(b"\r\n", at + 2)
                length = int(lowered[at + 17 : stop if stop >= 0 else len(lowered)])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, _, rest = head.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            self._answer(method, path, body)

    def _answer(self, method: bytes, path: bytes, body: bytes) -> None:
        answers = self.answers
        if method == b"POST" and path == b"/v1/chat/completions":
            if b'"stream":true' in body.replace(b" ", b""):
                tokens = json.loads(body).get("max_tokens") or TOKENS
                self.streaming = True
                self.transport.write(answers.stream_head)
                asyncio.get_running_loop().call_soon(self._stream_on, 0, max(1, min(tokens, len(answers.stream))))
            else:
                self.transport.write(answers.next_chat())
        elif method == b"GET" and path == b"/health":
            self.transport.write(answers.health)
        elif method == b"GET" and path == b"/v1/models":
            self.transport.write(answers.models)
        else:
            print(
                f"fast stub: 404 for {method.decode(errors='replace')} {path.decode(errors='replace')}",
                file=sys.stderr,
                flush=True,
            )
            self.transport.write(answers.not_found)

    def _stream_on(self, index: int, tokens: int) -> None:
        """One token per event-loop turn, so each leaves in its own write as an engine's would."""
        if self.transport is None:
            return
        self.transport.write(self.answers.stream[index])
        if index + 1 < tokens:
            asyncio.get_running_loop().call_soon(self._stream_on, index + 1, tokens)
        else:
            self.transport.write(self.answers.tail(tokens))
            self.streaming = False
            self._serve()


async def serve(host: str, port: int, model: str, stream_tokens: int, unique_ids: bool = False) -> None:
    answers = Answers(model, stream_tokens, unique_ids)
    server = await asyncio.get_running_loop().create_server(lambda: StubProtocol(answers), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="stub")
    parser.add_argument("--served-model-name", default=None, help="the name it answers to (default: --model)")
    parser.add_argument("--stream-tokens", type=int, default=256, help="most tokens in a streamed answer")
    parser.add_argument("--unique-ids", action="store_true", help="number the chat answers' ids")
    # vLLM's other flags are ignored, so the gateway can launch it as a managed engine (`launcher:`).
    args, _ = parser.parse_known_args(argv)
    try:
        asyncio.run(
            serve(args.host, args.port, args.served_model_name or args.model, args.stream_tokens, args.unique_ids)
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
