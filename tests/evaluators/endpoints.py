"""The evaluator tests' OpenAI endpoint: the one fake engine (tests/support/fake_engine.py), scripted per request.

`endpoint(reply, ...)` serves a `FakeEngine` on loopback and yields (url, engine); a test reads what was sent
from `engine.requests` (or `posted(engine)`). What its configuration adds to the engine's defaults, because the
evaluators' own logic is what these tests check, not an engine's:
- `reply(request)` answers each request: a text, an HTTP status to fail with (its message `scripted failure N`),
  or a whole chat message as a dict (its `content` the answer; other fields, such as a reasoning parser's
  `reasoning_content`, travel in the message).
- It cannot score: a request for prompt logprobs or an echo gets HTTP 400, so every item sends one generation
  and one refused option-scoring request, and option log-likelihood and the base cross-check are unavailable.
- `context_chars`: a prompt longer than that many characters (all its turns) is refused with vLLM's HTTP 400
  wording, before anything else is looked at; `max_model_len` is the context that wording and /v1/models state.
- `logprob(request)`: a generation that asks for logprobs gets one token per answer word at that logprob, with
  one worse alternative (`~`, one nat lower), so the reliability signals have something to read. Without it the
  answers carry no logprobs, like an endpoint that does not give them.
- usage says 10 prompt tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tests.support.fake_engine import CANNOT_SCORE, Answer, EngineConfig, FakeEngine, Request, Rule, Token
from tests.support.loopback import serve_app

PROMPT_TOKENS = 10
CONTEXT_ERROR = (
    "This model's maximum context length is {limit} tokens. However, your prompt contains at least "
    "{limit_plus} input tokens, which exceeds this limit even without any output tokens. Please "
    "reduce the length of the input prompt."
)

Reply = Callable[[Request], str | int | dict]


def last_turn(request: Request) -> str:
    """What an answer function reads: a chat's last message, or the completion prompt."""
    return request.body["messages"][-1]["content"] if request.chat else request.body["prompt"]


def prompt_chars(request: Request) -> int:
    """The prompt's length in characters, all its turns: the stand-in for tokens of `context_chars`."""
    if "messages" in request.body:
        return len("\n".join(str(message.get("content") or "") for message in request.body["messages"]))
    return len(str(request.body.get("prompt") or ""))


def posted(engine: FakeEngine) -> list[dict]:
    """Every request the engine got, in order, as its body with the path beside it."""
    return [{"path": request.path, **request.body} for request in engine.requests]


def answers(reply: Reply, logprob: Callable[[Request], float] | None) -> Callable[[Request], Answer]:
    def answer(request: Request) -> Answer:
        said = reply(request)
        if isinstance(said, int):
            return Answer(status=said, body={"error": {"message": f"scripted failure {said}"}})
        message = said if isinstance(said, dict) else {"content": said}
        text = message.get("content")
        tokens: tuple[Token, ...] = ()
        if logprob is not None and request.body.get("logprobs"):
            value = logprob(request)
            words = (text or "").split() or [""]
            tokens = tuple(Token(word, value, ((word, value), ("~", value - 1.0))) for word in words)
        extra = {key: field for key, field in message.items() if key not in ("role", "content")}
        return Answer(text=text, tokens=tokens, prompt_tokens=PROMPT_TOKENS, message_fields=extra)

    return answer


@contextlib.contextmanager
def endpoint(
    reply: Reply,
    model: str = "m",
    max_model_len: int | None = None,
    context_chars: int | None = None,
    logprob: Callable[[Request], float] | None = None,
) -> Iterator[tuple[str, FakeEngine]]:
    """Serve an engine answering `reply(request)` (see the module docstring); yield (base url, engine)."""
    rules = []
    if context_chars is not None:
        message = CONTEXT_ERROR.format(limit=max_model_len, limit_plus=(max_model_len or 0) + 1)
        too_long = Answer(status=400, body={"error": {"message": message, "type": "BadRequestError", "code": 400}})
        rules.append(Rule(lambda request: prompt_chars(request) > context_chars, too_long))
    rules.append(Rule(lambda request: request.scores, CANNOT_SCORE))
    config = EngineConfig(model=model, max_model_len=max_model_len, answer=answers(reply, logprob), rules=rules)
    engine = FakeEngine(config)
    with serve_app(engine) as url:
        yield url, engine
