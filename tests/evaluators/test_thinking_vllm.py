"""Thinking control on a real vLLM CPU server whose chat template branches on `enable_thinking`.

The tiny random model is served with a Qwen3-style template: thinking on (the
default) opens `<think>` in the generation prompt; `enable_thinking: false`
closes an empty block instead. The rendered prompt must differ with the
setting, and the reasoning the model writes must be gone before its answer is
parsed. A random model writes no reasoning on its own, so vLLM's structured
outputs force the shape a thinking model produces (`...</think>B`, or
`<think>...</think>B`): real engine, real template, real tokens.
"""

import asyncio
import json

import pytest

from evaluators.client import EndpointClient
from evaluators.evaluate import evaluate_task
from evaluators.records import MCRecord
from evaluators.requests import Prompt, generate
from evaluators.tasks import Task
from evaluators.thinking import ThinkingControl

pytestmark = pytest.mark.slow

THINKING_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
MESSAGES = ({"role": "user", "content": "Which organ makes bile? A. Spleen B. Liver C. Lung"},)


@pytest.fixture(scope="module")
def thinking_server(tiny_qwen3_moe, tmp_path_factory):
    from testkit.vllm_server import vllm_server

    scratch = tmp_path_factory.mktemp("vllm-thinking")
    template = scratch / "thinking.jinja"
    template.write_text(THINKING_TEMPLATE)
    with vllm_server(tiny_qwen3_moe, scratch, served_name="tiny", args=["--chat-template", str(template)]) as url:
        yield url


class ForcedShape(EndpointClient):
    """Adds vLLM structured outputs to generations, so the random model writes a thinking model's shape."""

    def __init__(self, *args, regex: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.regex = regex

    async def post(self, route, body, **options):
        if "logprobs" in body and "prompt_logprobs" not in body and "max_tokens" in body and body["max_tokens"] > 1:
            body = {**body, "structured_outputs": {"regex": self.regex}}
        return await super().post(route, body, **options)


def run(coro):
    return asyncio.run(coro)


def test_the_rendered_prompt_follows_enable_thinking(thinking_server):
    async def prompt_tokens(thinking):
        async with EndpointClient(thinking_server, "tiny") as client:
            await client.check()
            return (await generate(client, Prompt(messages=MESSAGES), 2, thinking)).prompt_tokens

    default = run(prompt_tokens(ThinkingControl()))
    on = run(prompt_tokens(ThinkingControl({"enable_thinking": True})))
    off = run(prompt_tokens(ThinkingControl({"enable_thinking": False})))
    via_effort = run(prompt_tokens(ThinkingControl(reasoning_effort="none")))  # vLLM: none -> thinking off
    assert default == on and off > on  # the off branch closes an empty block: more prompt tokens
    assert via_effort == off


@pytest.mark.parametrize(
    "thinking, regex",
    [
        (ThinkingControl(), r"[a-z ]{4,12}</think>B"),  # the template opened <think>; the model closes it
        (ThinkingControl({"enable_thinking": False}), r"<think>[a-z ]{4,12}</think>B"),
    ],
)
def test_reasoning_is_stripped_before_the_answer_is_parsed(thinking_server, tmp_path, thinking, regex):
    data = tmp_path / "items.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "question": f"Which organ makes substance {i}?",
            "options": {"A": "Spleen", "B": "Liver", "C": "Lung"},
            "answer": "B",
        }
        for i in range(2)
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = Task("thinking", "jsonl", data, max_tokens=24)

    async def records():
        async with ForcedShape(thinking_server, "tiny", regex=regex) as client:
            await client.check()
            return await evaluate_task(client, task, task.load(), [], progress=False, thinking=thinking)

    for record in map(MCRecord.to_json, run(records())):
        assert record["response"] == "B" and record["choice"] == "B" and record["correct"]
        assert record["reasoning"] and "</think>" not in record["response"]
        assert record["finish_reason"] == "stop"
