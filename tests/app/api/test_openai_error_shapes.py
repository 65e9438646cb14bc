"""The gateway's errors as the official `openai` client sees them: out-of-range values and too long a prompt are
`BadRequestError`s (400), the latter with OpenAI's `context_length_exceeded` code."""

from __future__ import annotations

import json

import openai
import pytest

from tests.app.in_process_gateway import in_process_gateway
from tests.support.fake_engine import Answer, EngineConfig, FakeEngine, Request, Rule
from tests.support.loopback import served

pytestmark = pytest.mark.timeout(120)
CONTEXT = 64
# What vLLM answers when the prompt does not fit (vllm/renderers/params.py, VLLMValidationError -> 400).
VLLM_TOO_LONG = {
    "error": {
        "message": f"This model's maximum context length is {CONTEXT} tokens. However, your prompt "
        "contains 300 input tokens, which exceeds this limit even without any output "
        "tokens. Please reduce the length of the input prompt.",
        "type": "BadRequestError",
        "param": "input_tokens",
        "code": 400,
    }
}


def too_long(request: Request) -> bool:
    """The engine's 64-token context: a prompt over 100 characters does not fit."""
    return len(json.dumps(request.body.get("messages") or request.body.get("prompt"))) > 100


# An OpenAI-shaped engine with a 64-token context: too long a prompt is refused like vLLM does.
SHORT_CONTEXT = EngineConfig(
    max_model_len=CONTEXT, answer=Answer(text="ok"), rules=[Rule(too_long, Answer(status=400, body=VLLM_TOO_LONG))]
)


@pytest.fixture
async def client():
    async with served(FakeEngine(SHORT_CONTEXT)) as engine_url, in_process_gateway(engine_url) as (url, _):
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
            yield client


async def test_an_out_of_range_value_is_a_bad_request_not_unprocessable(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}], temperature=9)
    assert caught.value.status_code == 400
    error = caught.value.body
    assert error["type"] == "invalid_request_error" and error["param"] == "temperature"
    assert error["code"] == "invalid_value"


@pytest.mark.parametrize("stream", [False, True])
async def test_too_long_a_prompt_is_openais_context_length_exceeded(client, stream):
    long = "word " * 100
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="stub", messages=[{"role": "user", "content": long}], stream=stream)
    error = caught.value.body
    assert (error["code"], error["param"], error["type"]) == (
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
    )
    assert "maximum context length" in error["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.completions.create(model="stub", prompt=long, stream=stream)
    assert (caught.value.body["code"], caught.value.body["param"]) == ("context_length_exceeded", "prompt")
    # a prompt that fits still works
    answer = await client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "ok"
