"""Every request is bounded: max_tokens, batch x n, admission by sequences and per key, the field allowlist,
evaluation-only echo / prompt logprobs, text-only content, the per-key cache salt, bounded check calls,
and unencodable values (lone surrogates, NaN) refused with a 400.

The gateway runs on a real loopback socket in front of a stub engine that
records what it was sent (tests/support/fake_engine.py), so each test sees both
the client's answer and what reached the engine. The last tests repeat the
key cases against the shared gateway's real vLLM engines.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace

import httpx
import pytest

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from tests.support.fake_engine import DEFAULT_ANSWER, Answer, EngineConfig, FakeEngine, Request, Rule
from tests.support.loopback import serve_app

KEYS = {"key-a": "a", "key-b": "b", "key-eval": "e"}
LIMIT = 64
COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"


def is_probe(request: Request) -> bool:
    """A check's call: the base check asks for prompt logprobs, self-consistency for n answers without logprobs."""
    body = request.body
    return body.get("prompt_logprobs") is not None or ((body.get("n") or 1) > 1 and "logprobs" not in body)


# A stream runs on in big chunks, as a long generation would (a reader that stops reading soon fills the socket
# buffers), and ends by itself after 20 s, so no test can hang on it.
ENDLESS = Rule(lambda request: request.stream, Answer(pieces=("x" * 16_384,), lasts_s=20.0, interval_s=0.05))
SLOW_PROBES = Rule(is_probe, replace(DEFAULT_ANSWER, delay_s=3.0))


def identify_keys(app, evaluation_keys: set[str]):
    """The auth middleware's request identity (key id, evaluation key), set here from the bearer token so
    these tests exercise admission on their own. A real auth middleware inside sets the same fields."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ").strip()
            state = scope.setdefault("state", {})
            state.setdefault("key_id", hashlib.sha256(token.encode()).hexdigest()[:16])
            state.setdefault("evaluation_key", token in evaluation_keys)
        await app(scope, receive, send)

    wrapped.state = app.state
    return wrapped


@pytest.fixture(scope="module")
def stub():
    engine = FakeEngine(EngineConfig(rules=[ENDLESS]))
    with serve_app(engine) as url:
        engine.url = url
        yield engine


@pytest.fixture(scope="module")
def gw(stub):
    url = stub.url
    config = parse_config(
        {
            "variants": {
                "plain": {"url": url, "served_model_name": "stub", "max_in_flight": 4},
                "evalv": {"url": url, "served_model_name": "stub", "evaluation": True},
                "mm": {"url": url, "served_model_name": "stub", "multimodal": True},
                "checked": {
                    "url": url,
                    "served_model_name": "stub",
                    "base": "plain",
                    "base_check": True,
                    "self_consistency": 3,
                },
            },
        }
    )
    settings = Settings(
        api_keys=",".join(KEYS),
        evaluation_api_keys="key-eval",
        max_tokens_limit=LIMIT,
        max_in_flight_per_key=2,
        max_echo_prompt_chars=200,
        check_timeout_s=0.5,
        check_max_tokens=8,
        health_interval_s=0.2,
    )
    app = create_app(settings, config)
    with serve_app(identify_keys(app, {"key-eval"})) as base_url:
        gateway = app.state.gateway
        deadline = time.monotonic() + 20
        while not (gateway.supervisor and gateway.supervisor.all_up()):
            assert time.monotonic() < deadline, "the stub variants never came up"
            time.sleep(0.1)
        gateway.url = base_url
        yield gateway


def post(gw, path, body=None, key="key-a", content=None, timeout=30):
    return httpx.post(
        gw.url + path,
        json=body,
        content=content,
        timeout=timeout,
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
    )


def error_of(response, status):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def forwarded(stub, action):
    """What the engine received while `action` ran (None if nothing reached it), and the response."""
    before = len(stub.bodies)
    response = action()
    return (stub.bodies[before] if len(stub.bodies) > before else None), response


# --- max_tokens -----------------------------------------------------------------------------------------


def test_omitted_max_tokens_is_forwarded_as_the_limit(gw, stub):
    sent, response = forwarded(
        stub, lambda: post(gw, COMPLETIONS, {"model": "plain", "prompt": "hi", "ignore_eos": True})
    )
    assert response.status_code == 200, response.text
    assert sent["max_tokens"] == LIMIT


def test_max_tokens_never_exceeds_the_engine_context(gw, stub):
    """An engine with a 48-token context (listed at /v1/models): an omitted max_tokens is forwarded as 48,
    not as the gateway's limit (LIMIT), which vLLM would refuse ("cannot be greater than max_model_len")."""
    stub.config.max_model_len = LIMIT - 16
    try:
        deadline = time.monotonic() + 10
        while gw.backends["plain"].max_model_len != LIMIT - 16:  # the next health probe learns it
            assert time.monotonic() < deadline, "the probe never read max_model_len"
            time.sleep(0.05)
        sent, response = forwarded(stub, lambda: post(gw, COMPLETIONS, {"model": "plain", "prompt": "hi"}))
        assert response.status_code == 200 and sent["max_tokens"] == LIMIT - 16
        error = error_of(post(gw, COMPLETIONS, {"model": "plain", "prompt": "hi", "max_tokens": LIMIT - 15}), 400)
        assert error["param"] == "max_tokens" and str(LIMIT - 16) in error["message"]
    finally:
        stub.config.max_model_len = None
        deadline = time.monotonic() + 10
        while gw.backends["plain"].max_model_len is not None and time.monotonic() < deadline:
            time.sleep(0.05)


def test_chat_forwards_max_tokens_and_max_completion_tokens_capped(gw, stub):
    sent, response = forwarded(
        stub,
        lambda: post(
            gw, CHAT, {"model": "plain", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 10}
        ),
    )
    assert response.status_code == 200, response.text
    assert sent["max_tokens"] == 10 and sent["max_completion_tokens"] == 10
    sent, _ = forwarded(
        stub, lambda: post(gw, CHAT, {"model": "plain", "messages": [{"role": "user", "content": "hi"}]})
    )
    assert sent["max_tokens"] == LIMIT and sent["max_completion_tokens"] == LIMIT


def test_min_tokens_cannot_exceed_max_tokens(gw):
    error = error_of(post(gw, COMPLETIONS, {"model": "plain", "prompt": "hi", "min_tokens": LIMIT + 1}), 400)
    assert error["param"] == "min_tokens"


# --- work amplification ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, param",
    [
        ({"prompt": ["x"] * 33}, "prompt"),  # more prompts than max_prompts_per_request (32)
        ({"prompt": ["x"] * 300, "n": 16}, "prompt"),  # the 4,800 choices
        ({"prompt": [[1, 2]] * 33}, "prompt"),  # a batch of token-id prompts counts the same
        ({"prompt": ["x"] * 8, "n": 9}, "n"),  # 72 sequences > max_sequences_per_request (64)
    ],
)
def test_work_amplification_is_refused_before_the_engine(gw, stub, body, param):
    sent, response = forwarded(stub, lambda: post(gw, COMPLETIONS, {"model": "evalv", "max_tokens": 2, **body}))
    assert error_of(response, 400)["param"] == param
    assert sent is None


def test_a_request_bigger_than_the_variant_can_ever_admit_is_400_not_429(gw):
    # `plain` admits 4 sequences and a key 2: 3 prompts can never fit, so retrying would not help.
    error = error_of(post(gw, COMPLETIONS, {"model": "plain", "prompt": ["a", "b", "c"], "max_tokens": 2}), 400)
    assert error["code"] == "too_many_sequences"


async def open_held_stream(client, gw, key, model="plain", prompt="hold"):
    """A stream whose client reads nothing: it holds its slots while the engine keeps sending."""
    request = client.build_request(
        "POST",
        gw.url + COMPLETIONS,
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "prompt": prompt, "stream": True, "max_tokens": 8},
    )
    return await client.send(request, stream=True)


async def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_admission_counts_sequences_not_requests(gw):
    # Two prompts in one request take two of `plain`'s four slots.
    backend = gw.backends["plain"]
    async with httpx.AsyncClient(timeout=30) as a, httpx.AsyncClient(timeout=30) as b:
        held = await open_held_stream(a, gw, "key-a", prompt=["one", "two"])
        try:
            assert held.status_code == 200
            assert backend.in_flight == 2
            held_b = await open_held_stream(b, gw, "key-b", prompt=["three", "four"])
            try:
                assert held_b.status_code == 200 and backend.in_flight == 4
                response = await b.post(
                    gw.url + COMPLETIONS,
                    headers={"Authorization": "Bearer key-eval"},
                    json={"model": "plain", "prompt": "x", "max_tokens": 2},
                )
                error = error_of(response, 429)
                assert error["code"] == "queue_full" and int(response.headers["retry-after"]) >= 1
            finally:
                await held_b.aclose()
        finally:
            await held.aclose()
    await wait_for(lambda: backend.in_flight == 0)


async def test_a_slow_reader_of_key_a_does_not_starve_key_b(gw, stub):
    # Key A opens streams and never reads them (a slow reader: the engine keeps sending, the socket
    # buffers fill). A may hold at most max_in_flight_per_key (2) sequences, so `plain` (4 slots) keeps
    # room for key B. Without per-key limits A's 4 streams take every slot and B gets 429s.
    backend = gw.backends["plain"]
    async with httpx.AsyncClient(timeout=30) as a, httpx.AsyncClient(timeout=30) as b:
        held, refused = [], []
        for _ in range(4):
            response = await open_held_stream(a, gw, "key-a")
            (held if response.status_code == 200 else refused).append(response)
        try:
            assert len(held) == 2, [r.status_code for r in held + refused]
            for response in refused:
                await response.aread()
                assert error_of(response, 429)["code"] == "key_limit"
                assert int(response.headers["retry-after"]) >= 1
            await wait_for(lambda: stub.open_streams >= 2)
            await asyncio.sleep(0.5)  # A's streams run on, unread
            answers = await asyncio.gather(
                *(
                    b.post(
                        gw.url + COMPLETIONS,
                        headers={"Authorization": "Bearer key-b"},
                        json={"model": "plain", "prompt": f"b{i}", "max_tokens": 2},
                    )
                    for i in range(2)
                )
            )
            assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
            assert list(gw.admission.by_key.values()) == [2]  # B's answers are done: only A's 2 remain
        finally:
            for response in held:
                await response.aclose()
    # A's slots come back once its streams are gone.
    await wait_for(lambda: backend.in_flight == 0 and not gw.admission.by_key)


# --- the field allowlist --------------------------------------------------------------------------------

UNLISTED_COMPLETION_FIELDS = {
    "request_id": "abc",
    "priority": -100,
    "kv_transfer_params": {"do_remote_decode": True},
    "vllm_xargs": {"x": 1},
    "logits_processors": ["mod.Proc"],
    "structured_outputs": {"regex": "a+"},
    "guided_json": {"type": "object"},
    "guided_regex": "a+",
    "guided_grammar": "root ::= 'a'",
    "best_of": 4,
    "use_beam_search": True,
    "suffix": "x",
    "return_tokens_as_token_ids": True,
    "bad_words": ["x"],
    "allowed_token_ids": [1, 2],
    "truncate_prompt_tokens": 5,
    "mm_processor_kwargs": {},
    "logprob_token_ids": [1],
    "session_id": "s",
    "return_token_ids": True,
}


@pytest.mark.parametrize("field", sorted(UNLISTED_COMPLETION_FIELDS))
def test_each_unlisted_completion_field_is_400_naming_it(gw, stub, field):
    body = {"model": "evalv", "prompt": "hi", "max_tokens": 2, field: UNLISTED_COMPLETION_FIELDS[field]}
    sent, response = forwarded(stub, lambda: post(gw, COMPLETIONS, body))
    error = error_of(response, 400)
    assert error["param"] == field and error["code"] == "unsupported_field" and field in error["message"]
    assert sent is None


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"chat_template": "{{ secrets }}"}, "chat_template"),
        ({"chat_template_kwargs": {"tools": [], "enable_thinking": True}}, "chat_template_kwargs.tools"),
        ({"media_io_kwargs": {}}, "media_io_kwargs"),
        ({"echo": True}, "echo"),  # vLLM's chat echo is not OpenAI's
        ({"documents": [{"text": "x"}]}, "documents"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ],
)
def test_each_unlisted_chat_field_is_400_naming_it(gw, stub, extra, param):
    body = {"model": "evalv", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}
    sent, response = forwarded(stub, lambda: post(gw, CHAT, body))
    assert error_of(response, 400)["param"] == param
    assert sent is None


def test_unlisted_message_fields_are_400_too(gw):
    body = {"model": "plain", "max_tokens": 2, "messages": [{"role": "user", "content": "hi", "tool_call_id": "x"}]}
    assert error_of(post(gw, CHAT, body), 400)["param"] == "messages.0.tool_call_id"


def test_documented_extras_are_forwarded(gw, stub):
    extras = {
        "top_k": 5,
        "min_p": 0.1,
        "repetition_penalty": 1.1,
        "ignore_eos": True,
        "min_tokens": 1,
        "stop": ["a", "b", "c", "d"],
        "logit_bias": {str(i): 1.0 for i in range(300)},
        "chat_template_kwargs": {"enable_thinking": False},
        "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
    }
    body = {"model": "plain", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extras}
    sent, response = forwarded(stub, lambda: post(gw, CHAT, body))
    assert response.status_code == 200, response.text
    assert {key: sent[key] for key in extras} == extras


def test_a_single_stop_string_is_not_held_to_the_list_limit(gw, stub):
    sent, response = forwarded(
        stub, lambda: post(gw, COMPLETIONS, {"model": "plain", "prompt": "x", "stop": "a stop string", "max_tokens": 2})
    )
    assert response.status_code == 200, response.text
    assert sent["stop"] == "a stop string"


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {str(i): 1.0 for i in range(301)}}, "logit_bias"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "big",
                        "schema": {"properties": {f"p{i}": {"type": "string"} for i in range(1000)}},
                    },
                }
            },
            "response_format.json_schema.schema",
        ),
        ({"chat_template_kwargs": {"reasoning_effort": "unbounded"}}, "chat_template_kwargs.reasoning_effort"),
    ],
)
def test_size_limits_of_allowed_fields(gw, stub, extra, param):
    body = {"model": "plain", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}
    sent, response = forwarded(stub, lambda: post(gw, CHAT, body))
    assert error_of(response, 400)["param"] == param
    assert sent is None


def test_media_content_parts_need_a_multimodal_variant(gw, stub):
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}},
    ]
    body = {"messages": [{"role": "user", "content": parts}], "max_tokens": 2}
    sent, response = forwarded(stub, lambda: post(gw, CHAT, {"model": "plain", **body}))
    assert error_of(response, 400)["param"] == "messages.0.content.1.type"
    assert sent is None
    sent, response = forwarded(stub, lambda: post(gw, CHAT, {"model": "mm", **body}))
    assert response.status_code == 200 and sent["messages"][0]["content"] == parts
    unknown = {
        "model": "mm",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "file:///etc/passwd"}}]}],
    }
    assert error_of(post(gw, CHAT, unknown), 400)["code"] == "unsupported_field"


# --- echo and prompt logprobs ---------------------------------------------------------------------------


def test_echo_and_prompt_logprobs_are_refused_for_ordinary_traffic(gw, stub):
    for path, body in (
        (COMPLETIONS, {"prompt": "hi", "echo": True, "logprobs": 1}),
        (COMPLETIONS, {"prompt": "hi", "prompt_logprobs": 0}),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "prompt_logprobs": 1}),
    ):
        sent, response = forwarded(
            stub, lambda path=path, body=body: post(gw, path, {"model": "plain", "max_tokens": 1, **body})
        )
        error = error_of(response, 400)
        assert error["code"] == "evaluation_only" and error["param"] in ("echo", "prompt_logprobs")
        assert sent is None


def test_echo_is_allowed_with_bounds_on_evaluation_variants_and_keys(gw, stub):
    echo = {"prompt": "Question: x\nAnswer: y", "echo": True, "logprobs": 1, "max_tokens": 1}
    sent, response = forwarded(stub, lambda: post(gw, COMPLETIONS, {"model": "evalv", **echo}))
    assert response.status_code == 200 and sent["echo"] is True
    # An evaluation key may use it on any variant.
    sent, response = forwarded(stub, lambda: post(gw, COMPLETIONS, {"model": "plain", **echo}, key="key-eval"))
    assert response.status_code == 200 and sent["echo"] is True
    # Bounded: the prompt size (max_echo_prompt_chars = 200) and the top-n.
    long = dict(echo, prompt="x" * 201)
    assert error_of(post(gw, COMPLETIONS, {"model": "evalv", **long}), 400)["code"] == "prompt_too_long_for_logprobs"
    tokens = dict(echo, prompt=[1] * 51)  # token ids count 4 characters each
    assert error_of(post(gw, COMPLETIONS, {"model": "evalv", **tokens}), 400)["param"] == "echo"
    assert error_of(post(gw, COMPLETIONS, {"model": "evalv", **dict(echo, logprobs=6)}), 400)["param"] == "logprobs"
    assert (
        error_of(post(gw, COMPLETIONS, {"model": "evalv", "prompt": "x", "prompt_logprobs": 6}), 400)["param"]
        == "prompt_logprobs"
    )


# --- per-key cache salt ---------------------------------------------------------------------------------


def test_cache_salt_is_per_key_and_set_by_the_gateway(gw, stub):
    body = {"model": "plain", "prompt": "shared prefix", "max_tokens": 1, "cache_salt": "guess"}
    salts = {}
    for key in ("key-a", "key-b", "key-a"):
        sent, response = forwarded(stub, lambda key=key: post(gw, COMPLETIONS, body, key=key))
        assert response.status_code == 200
        salts.setdefault(key, set()).add(sent["cache_salt"])
    assert len(salts["key-a"]) == 1 and salts["key-a"] != salts["key-b"]
    assert "guess" not in salts["key-a"] | salts["key-b"]
    assert all(len(salt) >= 32 for salt in salts["key-a"] | salts["key-b"])


# --- the checks' extra calls ----------------------------------------------------------------------------


def test_check_calls_are_capped_and_time_out_quickly(gw, stub):
    stub.config.rules.insert(0, SLOW_PROBES)  # the checks' calls hang for 3 s
    try:
        before = len(stub.bodies)
        started = time.monotonic()
        response = post(gw, COMPLETIONS, {"model": "checked", "prompt": "Q?", "max_tokens": 40, "temperature": 0})
        elapsed = time.monotonic() - started
    finally:
        stub.config.rules.remove(SLOW_PROBES)
    assert response.status_code == 200, response.text
    probes = stub.bodies[before + 1 :]
    resample = next(p for p in probes if p.get("n") == 3)
    assert resample["max_tokens"] == 8  # check_max_tokens, not the request's 40
    # The base check of a completion: prompt + answer echoed with logprobs (moeprune.reliability.crosscheck).
    assert any(p.get("echo") is True and p.get("logprobs") == 0 and p["max_tokens"] == 1 for p in probes)
    # Both probes hang for 3 s; check_timeout_s (0.5 s) drops them instead of waiting.
    assert elapsed < 2.5, elapsed
    signals = response.json()["reliability"]["signals"]
    assert "agreement" not in signals and "base_mean_logprob" not in signals
    assert gw.backends["plain"].in_flight == 0 and gw.backends["checked"].in_flight == 0


def test_check_calls_take_slots_and_are_skipped_when_the_engine_is_full(gw, stub):
    plain = gw.backends["plain"]
    plain.in_flight = plain.max_in_flight  # the base engine is full: its check must not overload it
    try:
        before = len(stub.bodies)
        response = post(gw, COMPLETIONS, {"model": "checked", "prompt": "Q?", "max_tokens": 4})
    finally:
        plain.in_flight = 0
    assert response.status_code == 200
    assert not any(p.get("echo") or p.get("prompt_logprobs") is not None for p in stub.bodies[before:])
    assert "base_mean_logprob" not in response.json()["reliability"]["signals"]


# --- unencodable values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, param",
    [
        (b'{"model": "plain", "prompt": "a\\ud800b", "max_tokens": 1}', "prompt"),
        (b'{"model": "plain", "messages": [{"role": "user", "content": "\\udfff"}]}', "messages.0.content"),
        (b'{"model": "plain", "prompt": "x", "user": "\\ud83d"}', "user"),
        (b'{"model": "plain", "prompt": "x", "logit_bias": {"\\ud800": 1}}', "logit_bias"),
        (b'{"model": "plain", "prompt": "x", "repetition_penalty": NaN}', "repetition_penalty"),
        (b'{"model": "plain", "prompt": "x", "temperature": Infinity}', "temperature"),
        (b'{"model": "plain", "prompt": "x", "logit_bias": {"5": -Infinity}}', "logit_bias.5"),
        (
            b'{"model": "plain", "prompt": "x", "response_format": {"type": "json_schema", "json_schema": '
            b'{"name": "a", "schema": {"maximum": NaN}}}}',
            "response_format.json_schema.schema.maximum",
        ),
    ],
)
def test_lone_surrogates_and_non_finite_numbers_are_400(gw, stub, content, param):
    sent, response = forwarded(stub, lambda: post(gw, COMPLETIONS if b'"prompt"' in content else CHAT, content=content))
    error = error_of(response, 400)
    assert error["param"] == param and error["code"] in ("invalid_text", "invalid_number")
    assert sent is None


# --- the same against real vLLM engines (the shared gateway) --------------------------------------------


@pytest.mark.slow
def test_real_engine_omitted_max_tokens_is_capped(gateway):
    # The shared gateway's limit is 256 tokens; the engines' context is 512. Without the cap,
    # ignore_eos generates to the end of the context (~500 tokens).
    response = httpx.post(
        gateway.url + COMPLETIONS,
        headers=gateway.headers,
        timeout=300,
        json={"model": "base", "prompt": "liver", "ignore_eos": True, "temperature": 0},
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 256


@pytest.mark.slow
def test_real_engine_bad_input_is_400_and_engines_keep_running(gateway):
    def restarts():
        text = httpx.get(gateway.url + "/metrics", timeout=10).text
        return sorted(line for line in text.splitlines() if line.startswith("moeprune_engine_restarts_total{"))

    before = restarts()
    cases = [
        (COMPLETIONS, {"model": "remote", "prompt": "x" * 3000, "echo": True, "logprobs": 5}, 400),
        (COMPLETIONS, {"model": "base", "prompt": "x " * 20_000, "echo": True, "logprobs": 1}, 400),
        (COMPLETIONS, {"model": "base", "prompt": "x", "request_id": "mine", "priority": -1}, 400),
        (COMPLETIONS, {"model": "base", "prompt": ["x"] * 300, "n": 16, "max_tokens": 240}, 400),
    ]
    for path, body, status in cases:
        response = httpx.post(gateway.url + path, headers=gateway.headers, json=body, timeout=60)
        assert response.status_code == status, (body.get("model"), response.text)
    for content in (
        b'{"model": "base", "messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 2}',
        b'{"model": "base", "prompt": "x", "repetition_penalty": NaN, "max_tokens": 2}',
    ):
        path = CHAT if b"messages" in content else COMPLETIONS
        response = httpx.post(
            gateway.url + path,
            content=content,
            timeout=60,
            headers={**gateway.headers, "content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
    # Bounded echo on the evaluation variant works (lm-eval's log-likelihood requests).
    response = httpx.post(
        gateway.url + COMPLETIONS,
        headers=gateway.headers,
        timeout=120,
        json={"model": "base", "prompt": "The liver", "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["choices"][0]["logprobs"]["token_logprobs"]) >= 2
    assert restarts() == before
