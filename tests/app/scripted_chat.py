"""A scripted chat engine with token logprobs, and report cards with certificates, for the certified-flag tests.

The user's words pick the answer's token logprobs (the gateway forwards them untouched):
"unsure" gives two tokens at -3.0 and -2.5 (a likely wrong answer), "abstain" answers
"I don't know." confidently, anything else answers confidently (-0.01, -0.02). The answer's
text names the engine, so a test sees who answered. A base-check request (`prompt_logprobs`)
is answered with prompt logprobs of -0.5 for every token.

The cards' p_wrong model reads one signal, mean_logprob: p_wrong = sigmoid(-2 - 2 * mean_logprob)
(no isotonic map), about 0.12 for a confident answer and 0.97 for an unsure one.
"""

from __future__ import annotations

import json

from tests.app.stub_engine import CLOSE, read_json, send_json

PROMPT_TOKENS = 7
CONFIDENT = [-0.01, -0.02]
UNSURE = [-3.0, -2.5]
BASE_CHECK_LOGPROB = -0.5
RISK_MODEL = {"features": ["mean_logprob"], "means": [0.0], "scales": [1.0], "coef": [-2.0], "intercept": -2.0,
              "iso_x": [], "iso_y": []}


def scripted_answer(text: str) -> tuple[str, list[float]]:
    if "unsure" in text:
        return "Perhaps the spleen", UNSURE
    if "abstain" in text:
        return "I don't know.", CONFIDENT
    return "The liver", CONFIDENT


def token_entry(logprob: float) -> dict:
    return {"token": "t", "logprob": logprob, "bytes": None,
            "top_logprobs": [{"token": str(i), "logprob": logprob - i, "bytes": None} for i in range(5)]}


class ScriptedChat:
    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        if scope["path"] == "/health":
            return await send_json(send, 200, {})
        if scope["path"] == "/v1/models":
            return await send_json(send, 200, {"object": "list", "data": [{"id": self.name, "object": "model"}]})
        request = await read_json(receive)
        self.requests.append(request)
        if request.get("prompt_logprobs") is not None:
            return await send_json(send, 200, self._base_check(request))
        user = " ".join(m["content"] for m in request["messages"] if m["role"] == "user")
        text, logprobs = scripted_answer(user)
        content = f"{text} ({self.name})"
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(logprobs),
                 "total_tokens": PROMPT_TOKENS + len(logprobs)}
        head = {"id": f"chatcmpl-{self.name}-{len(self.requests)}", "created": 1, "model": self.name}
        if not request.get("stream"):
            return await send_json(send, 200, {**head, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
                 "logprobs": {"content": [token_entry(lp) for lp in logprobs]}}]})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), CLOSE]})
        pieces = [content[: len(content) // 2], content[len(content) // 2:]]
        events = [{**head, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"content": piece}, "finish_reason": None,
             "logprobs": {"content": [token_entry(lp)]}}]} for piece, lp in zip(pieces, logprobs)]
        events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        for event in events:
            await send({"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    def _base_check(self, request: dict) -> dict:
        answer = request["messages"][-1]["content"]
        tokens = PROMPT_TOKENS + max(1, len(answer.split()))
        entries = [None] + [{"1": {"logprob": BASE_CHECK_LOGPROB, "rank": 1}} for _ in range(tokens - 1)]
        return {"id": "check", "object": "chat.completion", "created": 1, "model": self.name,
                "prompt_logprobs": entries,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": tokens, "completion_tokens": 1, "total_tokens": tokens + 1}}


def certificate(status: str = "certified", threshold: float | None = 0.5, alpha: float = 0.05,
                n: int = 400) -> dict:
    certified = status == "certified"
    return {"alpha": alpha, "delta": 0.05, "status": status, "threshold": threshold if certified else None,
            "coverage": 0.8 if certified else None, "n_unflagged": 320 if certified else 0,
            "errors_unflagged": 6 if certified else 0, "realised_error": 0.019 if certified else None,
            "error_upper": 0.037 if certified else None, "n_calibration": n, "n_fit": n, "tested": 12,
            "reason": None if certified else "no threshold keeps the error below alpha"}


def domain_entry(status: str = "certified", model: dict | None = RISK_MODEL, **kwargs) -> dict:
    return {"n": 400, "n_wrong": 60, "model": model, "certificate": certificate(status, **kwargs)}


def card(variant: str, domains: dict | None, weights_sha256: str | None = None, gate_sha256: str | None = None,
         gate_threshold: float | None = None) -> dict:
    """A report card; `domains` None: no reliability section at all."""
    data = {"schema_version": 1, "variant": variant, "model": variant, "tasks": {}}
    if domains is not None:
        data["reliability"] = {"alpha": 0.05, "delta": 0.05, "weights_sha256": weights_sha256,
                               "labels_sha256": "0" * 64, "base_check": False, "gate_sha256": gate_sha256,
                               "domains": domains}
    if gate_threshold is not None:
        data["domain_gate"] = {"in_domain": "biomedical", "n_in_domain": 10, "n_cross_domain": 10, "auroc": 0.9,
                               "target_recall": 0.95, "threshold": gate_threshold, "recall": 0.95,
                               "cross_domain_fallback_rate": 0.5}
    return data
