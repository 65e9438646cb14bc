"""The `openai` client's function-calling round trip through the gateway on a real vLLM CPU engine.

The gateway starts the engine itself (a managed variant with `tools: true`, so the command it builds
carries vLLM's tool-parser flags) for the session's tiny random Qwen3-MoE, with a hermes-style chat
template written here that renders tools, tool calls and tool results. A random model cannot choose a
tool, so the first turn names the function of a `strict` tool: vLLM's structured output then forces the
call and JSON arguments that match the schema (an enum, so a few tokens close it). The JSON grammar lets
whitespace in anywhere, where a random model stays forever; a logit bias against the whitespace tokens
(a field the gateway forwards) closes the arguments. The second turn sends the
tool's result back with `tool_choice` left to its default (`auto`, which vLLM serves only with
`--enable-auto-tool-choice`) and gets an ordinary, assessed completion.
"""

from __future__ import annotations

import json

import openai
import pytest
from transformers import AutoTokenizer

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from testkit.vllm_server import free_port
from tests.support.loopback import served, wait_until

pytestmark = pytest.mark.slow

# Hermes style, as Qwen's templates (kept short: the tiny model's context is 512 tokens of about a character
# each): tools listed in the system turn, calls as <tool_call>{json}</tool_call>,
# results as <tool_response> in a user turn. vLLM hands the template each call's arguments as a dict.
TOOL_TEMPLATE = """\
{%- if tools %}<|im_start|>system
<tools>
{%- for tool in tools %}
{{ tool.function | tojson }}
{%- endfor %}
</tools><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.role == "assistant" and message.tool_calls %}<|im_start|>assistant
{%- for call in message.tool_calls %}
<tool_call>
{"name": {{ call.function.name | tojson }}, "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

UNITS = ["celsius", "fahrenheit"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_temperature",
        "parameters": {
            "type": "object",
            "properties": {"unit": {"type": "string", "enum": UNITS}},
            "required": ["unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}  # vLLM 0.32 holds the arguments to the schema only for strict tools (--tool-strict-level auto)
NAMED = {"type": "function", "function": {"name": "get_temperature"}}
QUESTION = {"role": "user", "content": "How warm is it in Paris?"}


def whitespace_bias(model_dir) -> dict[str, int]:
    """-100 for every token that decodes to whitespace only (ten in the tiny tokenizer)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pieces = {i: tokenizer.decode([i]) for i in range(len(tokenizer))}
    return {str(i): -100 for i, piece in pieces.items() if piece and not piece.strip()}


async def test_openai_clients_tool_call_round_trip_on_a_real_engine(tiny_qwen3_moe, tmp_path):
    template = tmp_path / "tool_template.jinja"
    template.write_text(TOOL_TEMPLATE)
    engine = {"kv_cache_bytes": 134217728, "max_model_len": 512, "args": ["--chat-template", str(template)]}
    no_whitespace = whitespace_bias(tiny_qwen3_moe)
    config = parse_config(
        {
            "variants": {
                "tooled": {"model": str(tiny_qwen3_moe), "tools": True, "engine": engine},
                "plain": {"url": f"http://127.0.0.1:{free_port()}"},
            }
        }
    )  # never reached: refused before routing
    app = create_app(Settings(health_interval_s=0.5, max_tokens_limit=256), config)
    async with served(app) as url:
        backend = app.state.gateway.backends["tooled"]
        # A failed start sets last_error at once: stop waiting then, not after the timeout.
        await wait_until(lambda: backend.up or backend.last_error is not None, timeout=300)
        assert backend.up, backend.last_error
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)

        first = await client.chat.completions.create(
            model="tooled",
            messages=[QUESTION],
            tools=[WEATHER],
            tool_choice=NAMED,
            max_tokens=200,
            temperature=0,
            logit_bias=no_whitespace,
        )
        assert first.choices[0].message.tool_calls, first.model_dump()
        call = first.choices[0].message.tool_calls[0]
        assert call.type == "function" and call.function.name == "get_temperature"
        arguments = json.loads(call.function.arguments)
        assert set(arguments) == {"unit"} and arguments["unit"] in UNITS
        reliability = first.model_extra["reliability"]
        assert reliability["not_assessed"] == "tool_call" and reliability["flags"] == []

        stream = await client.chat.completions.create(
            model="tooled",
            messages=[QUESTION],
            tools=[WEATHER],
            tool_choice=NAMED,
            max_tokens=200,
            temperature=0,
            logit_bias=no_whitespace,
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
        streamed = "".join(
            delta.function.arguments or ""
            for chunk in chunks
            if chunk.choices
            for delta in chunk.choices[0].delta.tool_calls or ()
        )
        assert json.loads(streamed) == arguments  # greedy: the same call, in deltas the gateway passed on
        assert chunks[-1].model_extra["reliability"]["not_assessed"] == "tool_call"

        result = {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21})}
        second = await client.chat.completions.create(
            model="tooled",
            messages=[QUESTION, first.choices[0].message.model_dump(exclude_none=True), result],
            tools=[WEATHER],
            max_tokens=8,
            temperature=0,
        )
        answer = second.choices[0]
        assert answer.finish_reason in ("stop", "length") and not answer.message.tool_calls
        assert isinstance(answer.message.content, str)
        assert "not_assessed" not in second.model_extra["reliability"]  # an answer: judged as usual

        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="plain", messages=[QUESTION], tools=[WEATHER], max_tokens=8)
        assert refused.value.body["param"] == "tools" and refused.value.body["code"] == "tools_not_supported"
