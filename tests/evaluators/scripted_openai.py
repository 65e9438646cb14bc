"""A local OpenAI-shaped server whose behaviour a test scripts: context limit, failures, reasoning fields.

Unlike fake_openai.py it keeps every request body, reports a `max_model_len`
in /v1/models, refuses prompts longer than `context_chars` characters with
vLLM's own HTTP 400 wording, and lets `reply(body)` return an answer, an
HTTP status to fail with, or a full message (e.g. with `reasoning_content`).
With `logprob(body)`, generations carry one token per answer word at that logprob (top-2 alternatives),
so the evaluators' reliability signals have something to read.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.evaluators.fake_openai import send_json

CONTEXT_ERROR = (
    "This model's maximum context length is {limit} tokens. However, your prompt contains at least "
    "{limit_plus} input tokens, which exceeds this limit even without any output tokens. Please "
    "reduce the length of the input prompt."
)


def prompt_text(body: dict) -> str:
    if "messages" in body:
        return "\n".join(str(m.get("content") or "") for m in body["messages"])
    return str(body.get("prompt") or "")


def token_logprobs(answer: str, logprob: float, chat: bool) -> dict:
    words = (answer or "").split() or [""]
    if chat:
        return {
            "content": [
                {
                    "token": w,
                    "logprob": logprob,
                    "top_logprobs": [{"token": w, "logprob": logprob}, {"token": "~", "logprob": logprob - 1.0}],
                }
                for w in words
            ]
        }
    return {
        "tokens": words,
        "token_logprobs": [logprob] * len(words),
        "top_logprobs": [{w: logprob, "~": logprob - 1.0} for w in words],
        "text_offset": [0] * len(words),
    }


@contextlib.contextmanager
def scripted_server(
    reply, model: str = "m", max_model_len: int | None = 64, context_chars: int | None = None, logprob=None
):
    """Yield (url, requests list). `reply(body)` -> str answer | int status | dict chat message."""
    requests: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, payload: dict) -> None:
            send_json(self, status, payload)

        def do_GET(self):
            if self.path == "/v1/models":
                entry = {"id": model, "object": "model"}
                if max_model_len:
                    entry["max_model_len"] = max_model_len
                self._send(200, {"object": "list", "data": [entry]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with lock:
                requests.append({"path": self.path, **body})
            if context_chars is not None and len(prompt_text(body)) > context_chars:
                message = CONTEXT_ERROR.format(limit=max_model_len, limit_plus=(max_model_len or 0) + 1)
                self._send(400, {"error": {"message": message, "type": "BadRequestError", "code": 400}})
                return
            if "prompt_logprobs" in body or body.get("echo"):
                self._send(400, {"error": {"message": "prompt logprobs are not supported"}})
                return
            answer = reply(body)
            if isinstance(answer, int):
                self._send(answer, {"error": {"message": f"scripted failure {answer}"}})
                return
            message = answer if isinstance(answer, dict) else {"role": "assistant", "content": answer}
            if self.path == "/v1/chat/completions":
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
            else:
                choice = {"index": 0, "text": message.get("content"), "finish_reason": "stop"}
            if logprob is not None and body.get("logprobs"):
                choice["logprobs"] = token_logprobs(
                    message.get("content"), logprob(body), self.path == "/v1/chat/completions"
                )
            self._send(
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [choice],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
                },
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
