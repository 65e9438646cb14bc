"""A tiny local OpenAI-compatible server for unit tests of our own logic.

Serves /v1/models and /v1/chat/completions (and /v1/completions) with answers
from a callable, and NO logprobs (like an endpoint that does not support
them); scoring requests (prompt_logprobs / echo) are rejected with HTTP 400.
Counts every request it answers and keeps the last Authorization header.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
    """Answer an http.server request with a JSON body (the test endpoints' one response writer)."""
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def fake_openai_server(answer=lambda prompt: "A", model: str = "fake"):
    """Yield (url, counter dict) of a server answering every chat prompt with answer(prompt)."""
    counter = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, status: int, payload: dict) -> None:
            send_json(self, status, payload)

        def do_GET(self):
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
            elif self.path == "/health":
                self._send(200, {})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            counter["requests"] += 1
            counter["authorization"] = self.headers.get("authorization")
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if "prompt_logprobs" in request or request.get("echo"):
                self._send(400, {"error": {"message": "prompt logprobs are not supported"}})
                return
            if self.path == "/v1/chat/completions":
                prompt = request["messages"][-1]["content"]
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer(prompt)},
                    "finish_reason": "stop",
                }
            elif self.path == "/v1/completions":
                prompt = request["prompt"]
                choice = {"index": 0, "text": answer(prompt), "finish_reason": "stop"}
            else:
                self._send(404, {"error": "not found"})
                return
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
        yield f"http://127.0.0.1:{server.server_address[1]}", counter
    finally:
        server.shutdown()
        server.server_close()
