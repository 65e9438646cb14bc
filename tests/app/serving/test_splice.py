"""A non-streaming answer is the engine's bytes with `model` and `reliability` spliced in (app/serving/splice.py)
only where that is the very JSON value the re-encoded answer has, keys in the same order; otherwise re-encoded."""

from __future__ import annotations

import json

import httpx
import pytest

from app.reliability.verdict import flags_header
from app.serving.codec import loads_standard
from app.serving.splice import encode_reliability, splice_answer
from tests.app.in_process_gateway import in_process_gateway
from tests.support.loopback import served

RELIABILITY = {"flags": ["low_confidence"], "mean_logprob": -3.711265390778409e-05, "text": "é\u2028"}
CHOICES = '[{"index":0,"message":{"role":"assistant","content":"a \\"model\\": \\n b"},"finish_reason":"stop"}]'


def expected(content: bytes, variant: str) -> str:
    """The answer as the gateway re-encodes it: parsed, `model` replaced, `reliability` added last."""
    answer = json.loads(content)
    answer["model"] = variant
    answer["reliability"] = RELIABILITY
    return json.dumps(answer)


def splice(content: bytes, variant: str) -> bytes | None:
    answer, standard = loads_standard(content)
    assert standard
    return splice_answer(content, answer, variant, encode_reliability(RELIABILITY))


SPLICED = [
    ('{"id":"x","model":"served","choices":' + CHOICES + ',"n":1.0e-5}', "stub"),
    ('{"model":"served","choices":[]}\n', "stub"),
    ('{"id":"x","model":"stub","choices":' + CHOICES + "}  ", "stub"),  # already the variant's: no model change
    ('{"id": "x", "model": "stub", "created": 1}', "stub"),  # engine whitespace, model unchanged
    ('{"model":"served","text":"caf\xc3\xa9 \xe2\x80\xa8"}', "stub"),  # raw UTF-8 in the engine's bytes
    ('{"model":"served"}', 'var"iant\\é'),  # a variant name json.dumps escapes
]
REFUSED = [
    '{"id":"x","model":"served","choices":[{"model":"served"}]}',  # "model" twice
    '{"id":"x","model": "served"}',  # not spelled as json.dumps spells it
    '{"id":"x","mod\\u0065l":"served","choices":[{"model":"served"}]}',  # the top-level key escaped
    '{"id":"x","model":"served","reliability":{}}',  # a reliability of the engine's own
    '{"id":"x","model":null}',
    '{"id":"x"}',
    '{"model":"served","t":"\\u00e9"}',  # a \\u escape: the key could be spelled with one
]


@pytest.mark.parametrize(("text", "variant"), SPLICED)
def test_a_spliced_answer_is_the_re_encoded_answer(text, variant):
    content = text.encode("latin-1")  # the UTF-8 bytes spelled out in the text
    spliced = splice(content, variant)
    assert spliced is not None
    assert json.dumps(json.loads(spliced)) == expected(content, variant)  # same values, same key order


@pytest.mark.parametrize("text", REFUSED)
def test_an_answer_that_might_differ_is_not_spliced(text):
    assert splice(text.encode(), "stub") is None


def test_non_standard_json_is_never_spliced():
    answer, standard = loads_standard(b'{"model":"served","x":NaN}')
    assert not standard and answer["model"] == "served"


SERVED = "served-name"
ENGINE_ANSWER = (
    b'{"id":"cmpl-1","object":"chat.completion","created":1,"model":"' + SERVED.encode() + b'","choices":'
    b'[{"index":0,"message":{"role":"assistant","content":"ok"},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4},"score":1.0e-5}'
)


async def raw_engine(scope, receive, send):
    """An engine that answers with exact bytes (json.dumps would write `score` as 1e-05)."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/v1/models":
        body = json.dumps({"object": "list", "data": [{"id": SERVED, "object": "model"}]}).encode()
    elif path == "/v1/chat/completions":
        while (await receive()).get("more_body"):
            pass
        body = ENGINE_ANSWER
    else:
        body = b"{}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def test_the_client_gets_the_engines_bytes_with_model_and_reliability_spliced():
    async with served(raw_engine) as engine_url, in_process_gateway(engine_url) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post(
                "/v1/chat/completions", json={"model": "stub", "messages": [{"role": "user", "content": "hi"}]}
            )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer)[-2:] == ["score", "reliability"] and answer["model"] == "stub"
    assert answer["score"] == 1e-05 and answer["choices"][0]["message"]["content"] == "ok"
    reliability = answer["reliability"]
    assert response.content == ENGINE_ANSWER.replace(SERVED.encode(), b"stub")[:-1] + b',"reliability":' + (
        encode_reliability(reliability) + b"}"
    )
    assert response.headers["x-moe-reliability-flags"] == flags_header(reliability)
