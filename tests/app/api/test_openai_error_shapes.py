"""The gateway's errors as the official `openai` client sees them: out-of-range values and too long a prompt are
`BadRequestError`s (400), the latter with OpenAI's `context_length_exceeded` code."""

from __future__ import annotations

import json

import openai
import pytest

from tests.app.stub_engine import in_process_gateway, read_json, send_json, served

pytestmark = pytest.mark.timeout(120)
CONTEXT = 64
# What vLLM answers when the prompt does not fit (vllm/renderers/params.py, VLLMValidationError -> 400).
VLLM_TOO_LONG = {"error": {"message": f"This model's maximum context length is {CONTEXT} tokens. However, your prompt "
                                      "contains 300 input tokens, which exceeds this limit even without any output "
                                      "tokens. Please reduce the length of the input prompt.",
                           "type": "BadRequestError", "param": "input_tokens", "code": 400}}


async def short_context_engine(scope, receive, send):
    """An OpenAI-shaped engine with a 64-token context: a prompt over 100 characters is refused like vLLM does."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    path = scope["path"]
    if path == "/health":
        return await send_json(send, 200, {})
    if path == "/v1/models":
        return await send_json(send, 200, {"object": "list", "data": [{"id": "stub", "max_model_len": CONTEXT}]})
    body = await read_json(receive)
    if len(json.dumps(body.get("messages") or body.get("prompt"))) > 100:
        return await send_json(send, 400, VLLM_TOO_LONG)
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    if path == "/v1/chat/completions":
        return await send_json(send, 200, {"id": "chat-1", "object": "chat.completion", "created": 1, "model": "stub",
                                           "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                                        "message": {"role": "assistant", "content": "ok"}}],
                                           "usage": usage})
    return await send_json(send, 200, {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "stub",
                                       "choices": [{"index": 0, "text": "ok", "logprobs": None,
                                                    "finish_reason": "stop"}], "usage": usage})


@pytest.fixture
async def client():
    async with served(short_context_engine) as engine_url, in_process_gateway(engine_url) as (url, _):
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
            yield client


async def test_an_out_of_range_value_is_a_bad_request_not_unprocessable(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}],
                                             temperature=9)
    assert caught.value.status_code == 400
    error = caught.value.body
    assert error["type"] == "invalid_request_error" and error["param"] == "temperature"
    assert error["code"] == "invalid_value"


@pytest.mark.parametrize("stream", [False, True])
async def test_too_long_a_prompt_is_openais_context_length_exceeded(client, stream):
    long = "word " * 100
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="stub", messages=[{"role": "user", "content": long}],
                                             stream=stream)
    error = caught.value.body
    assert (error["code"], error["param"], error["type"]) == ("context_length_exceeded", "messages",
                                                              "invalid_request_error")
    assert "maximum context length" in error["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.completions.create(model="stub", prompt=long, stream=stream)
    assert (caught.value.body["code"], caught.value.body["param"]) == ("context_length_exceeded", "prompt")
    # a prompt that fits still works
    answer = await client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "ok"
