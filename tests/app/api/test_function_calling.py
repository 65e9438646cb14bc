"""Function calling through the gateway, against a fake engine (tests/support/fake_engine.py): the schema's shapes
and bounds, the 400 for variants without `tools: true`, guards that skip a fallback without tools, and the
`reliability` object of a tool call. The round trip on a real vLLM engine is test_function_calling_vllm.py.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from app.config.settings import Settings
from app.config.variants import parse_config
from app.engines.command import launch_command
from app.engines.supervisor import build_backends
from app.main import create_app
from moeprune.errors import UserError
from pruning.domain_gate_files import build_gate
from tests.support import fake_engine
from tests.support.fake_engine import Answer, EngineConfig, FakeEngine, Request, Rule, Token, ToolCall
from tests.support.loopback import serve_app

CHAT = "/v1/chat/completions"
ARGUMENTS = '{"city": "Paris"}'
CALL_ID = "chatcmpl-tool-0123"
LOGPROBS = (Token("{", -0.1, (("{", -0.1),)),)


def tool_answer(name: str) -> Answer:
    """vLLM's answer to a `tool_choice` naming a function: `content: null`, a call of it."""
    return Answer(tool_call=ToolCall(name, ARGUMENTS, CALL_ID), tokens=LOGPROBS, id="chat-s")


def stream_chunks(name: str) -> list[dict]:
    """The chunks the engine streams for a call of `name`, before its usage chunk."""
    return fake_engine.stream_chunks(tool_answer(name), Request(CHAT, {}, {}))


# An engine with a tool parser: a named `tool_choice` gets a call of that function; anything else the text "yes".
TOOLS = EngineConfig(
    answer=Answer(text="yes", tokens=LOGPROBS),
    rules=[
        Rule(lambda request: request.named_function is not None, lambda request: tool_answer(request.named_function))
    ],
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
USER = {"role": "user", "content": "What is the weather in Paris?"}
CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": CALL_ID, "type": "function", "function": {"name": "get_weather", "arguments": ARGUMENTS}}],
}
RESULT = {"role": "tool", "tool_call_id": CALL_ID, "content": "sunny, 21 C"}
# The keys every reliability object has: what an app already parses.
RELIABILITY_KEYS = {
    "flags",
    "abstained",
    "signals",
    "thresholds_source",
    "p_wrong",
    "above_risk",
    "domain",
    "certificate",
}


@pytest.fixture(scope="module")
def gate_file(tmp_path_factory):
    work = tmp_path_factory.mktemp("tool-gate")
    (work / "in.jsonl").write_text(
        "".join(json.dumps({"text": f"Which enzyme does drug {i} inhibit?"}) + "\n" for i in range(20))
    )
    (work / "ref.jsonl").write_text(
        "".join(json.dumps({"text": f"Which city hosts festival {i}?"}) + "\n" for i in range(20))
    )
    return build_gate([work / "in.jsonl"], [work / "ref.jsonl"]).save(work / "domain_gate.json")


@pytest.fixture(scope="module")
def stub():
    engine = FakeEngine(TOOLS)
    with serve_app(engine) as url:
        engine.url = url
        yield engine


@pytest.fixture(scope="module")
def gw(stub, gate_file):
    engine = {"url": stub.url, "served_model_name": "stub"}
    # threshold 1.0: every prompt scores below it, so the gate always wants the fallback.
    always_fallback = {"file": str(gate_file), "threshold": 1.0}
    config = parse_config(
        {
            "variants": {
                "tooled": {**engine, "tools": True},
                "plain": engine,
                # No card: every answer is `uncertified`, which the certified cascade escalates on.
                "cascaded": {**engine, "tools": True, "base": "plain", "base_check": False, "cascade": True},
                "gated": {**engine, "tools": True, "guard": {"domain_gate": {**always_fallback, "fallback": "plain"}}},
                "gated_to_tools": {
                    **engine,
                    "tools": True,
                    "guard": {"domain_gate": {**always_fallback, "fallback": "tooled"}},
                },
                "checked": {**engine, "tools": True, "base": "tooled", "self_consistency": 3},
            },
            "experiments": {
                "mixed": {"arms": {"tooled": 50, "plain": 50}},
                "all_tools": {"arms": {"tooled": 50, "cascaded": 50}},
            },
        }
    )
    app = create_app(Settings(max_tokens_limit=64, health_interval_s=0.2), config)
    with serve_app(app) as url:
        gateway = app.state.gateway
        deadline = time.monotonic() + 20
        while not (gateway.supervisor and gateway.supervisor.all_up()):
            assert time.monotonic() < deadline, "the stub variants never came up"
            time.sleep(0.1)
        gateway.url = url
        yield gateway


def post(gw, body: dict) -> httpx.Response:
    return httpx.post(gw.url + CHAT, json={"max_tokens": 8, **body}, timeout=30)


def sent_by(stub, action):
    """The bodies the engine received while `action` ran, and the response."""
    before = len(stub.bodies)
    response = action()
    return stub.bodies[before:], response


def error_of(response: httpx.Response) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


# --- the schema -------------------------------------------------------------------------------------------


def test_a_whole_tool_conversation_is_forwarded_unchanged(gw, stub):
    body = {
        "model": "tooled",
        "messages": [USER, CALLED, RESULT],
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }
    sent, response = sent_by(stub, lambda: post(gw, body))
    assert response.status_code == 200, response.text
    assert [sent[0][key] for key in ("messages", "tools", "tool_choice", "parallel_tool_calls")] == [
        [USER, CALLED, RESULT],
        [WEATHER],
        "auto",
        False,
    ]


WIDE = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "d" * 200} for i in range(60)}}


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"parallel_tool_calls": True}, "parallel_tool_calls"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
            "tool_choice.function.name",
        ),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [WEATHER, WEATHER]}, "tools.1.function.name"),
        ({"tools": []}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "get weather"}}]}, "tools.0.function.name"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools.0.type"),
        ({"tools": [{"type": "function", "function": {"name": "f", "code": "rm -rf /"}}]}, "tools.0.function.code"),
        ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]}, "tools"),
        (
            {"tools": [{"type": "function", "function": {"name": f"f{i}", "parameters": WIDE}} for i in range(5)]},
            "tools",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {
                                    f"p{i}": {"type": "string", "description": "d" * 200} for i in range(90)
                                },
                            },
                        },
                    }
                ]
            },
            "tools.0.function.parameters",
        ),
        ({"messages": [{"role": "tool", "content": "sunny"}]}, "messages.0.tool_call_id"),
        ({"messages": [{"role": "tool", "tool_call_id": CALL_ID}]}, "messages.0.content"),
        ({"messages": [{**USER, "tool_call_id": CALL_ID}]}, "messages.0.tool_call_id"),
        ({"messages": [{**USER, "tool_calls": CALLED["tool_calls"]}]}, "messages.0.tool_calls"),
        (
            {"messages": [USER, {**CALLED, "tool_calls": [{**CALLED["tool_calls"][0], "type": "code"}]}]},
            "messages.1.tool_calls.0.type",
        ),
        (
            {
                "messages": [
                    USER,
                    {
                        **CALLED,
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": "x" * 65_537},
                            }
                        ],
                    },
                ]
            },
            "messages.1.tool_calls.0.function.arguments",
        ),
    ],
)
def test_malformed_or_oversized_tool_fields_are_400_naming_the_field(gw, stub, extra, param):
    body = {"model": "tooled", "messages": [USER], **extra}
    sent, response = sent_by(stub, lambda: post(gw, body))
    assert error_of(response)["param"] == param
    assert sent == []


# --- variants without tools ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages, extra, param",
    [
        ([USER], {"tools": [WEATHER]}, "tools"),
        ([USER, CALLED, RESULT], {}, "messages.1.tool_calls"),
        ([USER, {"role": "assistant", "content": "I will look."}, RESULT], {}, "messages.2.role"),
    ],
)
def test_tools_to_a_variant_without_them_are_400_and_never_forwarded(gw, stub, messages, extra, param):
    sent, response = sent_by(stub, lambda: post(gw, {"model": "plain", "messages": messages, **extra}))
    error = error_of(response)
    assert (error["param"], error["code"]) == (param, "tools_not_supported")
    assert "'plain'" in error["message"] and "`tools: true`" in error["message"]
    assert sent == []


def test_an_experiment_takes_tools_only_if_every_arm_does(gw, stub):
    assigned = gw.metrics.assignments.labels("mixed", "tooled")._value.get()
    sent, response = sent_by(stub, lambda: post(gw, {"model": "mixed", "messages": [USER], "tools": [WEATHER]}))
    error = error_of(response)
    assert "experiment 'mixed'" in error["message"] and "'plain'" in error["message"] and sent == []
    assert gw.metrics.assignments.labels("mixed", "tooled")._value.get() == assigned  # refused before any draw
    response = post(gw, {"model": "all_tools", "messages": [USER], "tools": [WEATHER], "tool_choice": NAMED})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_plain_chats_still_reach_variants_without_tools(gw):
    assert post(gw, {"model": "plain", "messages": [USER]}).status_code == 200


# --- the reliability object of a tool call ---------------------------------------------------------------


def test_a_tool_call_is_not_assessed_and_runs_no_checks(gw, stub):
    body = {"model": "checked", "messages": [USER], "tools": [WEATHER], "tool_choice": NAMED}
    sent, response = sent_by(stub, lambda: post(gw, body))
    assert response.status_code == 200, response.text
    assert len(sent) == 1  # no base cross-check, no self-consistency samples
    choice = response.json()["choices"][0]
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == ARGUMENTS
    reliability = response.json()["reliability"]
    assert RELIABILITY_KEYS <= set(reliability)
    assert reliability["not_assessed"] == "tool_call"
    assert (reliability["flags"], reliability["p_wrong"], reliability["certificate"]) == ([], None, None)
    assert reliability["abstained"] is False and reliability["above_risk"] is False
    assert response.headers["x-moe-reliability-flags"] == "none"
    # A text answer of the same variant is judged as usual (no card: uncertified).
    text = post(gw, {"model": "checked", "messages": [USER, CALLED, RESULT], "tools": [WEATHER]}).json()
    assert "not_assessed" not in text["reliability"] and "uncertified" in text["reliability"]["flags"]


def test_streamed_tool_call_deltas_pass_through_unchanged(gw):
    body = {"model": "tooled", "messages": [USER], "tools": [WEATHER], "tool_choice": NAMED, "stream": True}
    with httpx.stream("POST", gw.url + CHAT, json={"max_tokens": 8, **body}, timeout=30) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    expected = [{**chunk, "model": "tooled"} for chunk in stream_chunks("get_weather")]
    assert chunks[:-1] == expected
    assert chunks[-1]["choices"] == [] and chunks[-1]["reliability"]["not_assessed"] == "tool_call"


# --- guards: a fallback without tools is skipped -------------------------------------------------------


def test_the_cascade_skips_a_fallback_without_tools(gw, stub):
    tool_turn = {"model": "cascaded", "messages": [USER, CALLED, RESULT], "tools": [WEATHER]}
    sent, response = sent_by(stub, lambda: post(gw, tool_turn))
    assert response.status_code == 200, response.text
    reliability = response.json()["reliability"]
    assert reliability["guard"]["cascade"] == "no_tools" and reliability["guard"]["served_by"] == "cascaded"
    assert "guard_unavailable" in reliability["flags"] and "escalated" not in reliability
    assert response.headers["x-moe-guard"] == "cascade=no_tools" and len(sent) == 1
    # The same flagged answer without tools escalates to the base as usual.
    plain = post(gw, {"model": "cascaded", "messages": [USER]})
    assert plain.json()["reliability"]["guard"]["cascade"] == "escalated"
    assert plain.headers["x-moe-variant"] == "plain"


def test_the_domain_gate_keeps_tool_requests_off_a_fallback_without_tools(gw, stub):
    body = {"model": "gated", "messages": [USER], "tools": [WEATHER], "tool_choice": NAMED}
    response = post(gw, body)
    assert response.status_code == 200, response.text
    guard = response.json()["reliability"]["guard"]
    assert (guard["gate"], guard["served_by"]) == ("no_tools", "gated")
    assert response.headers["x-moe-variant"] == "gated" and response.headers["x-moe-guard"] == "gate=no_tools"
    # A fallback with tools takes them; a plain chat goes to the tool-less fallback as before.
    assert post(gw, {**body, "model": "gated_to_tools"}).headers["x-moe-variant"] == "tooled"
    assert post(gw, {"model": "gated", "messages": [USER]}).headers["x-moe-variant"] == "plain"
    decisions = gw.metrics.guard_decisions.labels("gated", "domain_gate", "no_tools")._value.get()
    assert decisions >= 1


# --- the variants file and the engine command -------------------------------------------------------------


@pytest.mark.parametrize(
    "variant, message",
    [
        ({"model": "/m", "tool_parser": "hermes"}, "set `tools: true` too"),
        ({"url": "http://e:8000", "tools": True, "tool_parser": "hermes"}, "give `tools: true` only"),
        (
            {"model": "/m", "tools": True, "engine": {"args": ["--tool-call-parser=hermes"]}},
            "--tool-call-parser is set by the gateway",
        ),
        ({"model": "/m", "tools": True, "engine": {"args": ["--enable-auto-tool-choice"]}}, "use `tools: true`"),
        ({"model": "/m", "tools": True, "tool_parser": "made_up"}, "'hermes'"),
    ],
)
def test_tool_settings_that_cannot_work_stop_the_start_naming_the_fix(variant, message):
    with pytest.raises(UserError, match="variants.v") as caught:
        parse_config({"variants": {"v": variant}})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "variant, flags",
    [
        ({"tools": True}, ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]),
        ({"tools": True, "tool_parser": "openai"}, ["--enable-auto-tool-choice", "--tool-call-parser", "openai"]),
        ({}, []),
    ],
)
def test_a_managed_engine_gets_the_tool_parser_flags(tmp_path, variant, flags):
    config = parse_config({"variants": {"v": {"model": str(tmp_path), **variant}}})
    command = launch_command(build_backends(config, Settings(), tmp_path / "work")["v"].engine.spec)
    found = (
        command[command.index("--enable-auto-tool-choice") :][:3]
        if flags
        else [arg for arg in command if "tool" in arg]
    )
    assert found == flags
