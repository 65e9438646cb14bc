"""Streams are parsed at the byte level, engine error events reach the client, error messages stay generic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import psutil
import pytest

from app.serving.sse import sse_data
from testkit.vllm_server import free_port, vllm_server
from tests.app.in_process_gateway import AccessRecords, in_process_gateway
from tests.support.fake_engine import ENGINE_500, ENGINE_CORE_DIED, Answer, EngineConfig, FakeEngine, Rule, says
from tests.support.loopback import served, wait_until

pytestmark = pytest.mark.timeout(300)

COMPLETIONS = "/v1/completions"
SEPARATORS = "a\u2028b\u2029c\u0085d"
# The prompt picks the engine's behaviour (the gateway forwards it untouched).
SCRIPT = [
    Rule(says("separators"), Answer(pieces=(SEPARATORS, " end"))),  # raw U+2028 and friends, as vLLM sends them
    Rule(says("error"), Answer(pieces=("partial",), error_event=ENGINE_CORE_DIED)),  # its engine core died
    Rule(says("fail"), ENGINE_500),
]  # a 500 whose body holds internal details


async def pieces(*parts: bytes):
    for part in parts:
        yield part


async def collect(*parts: bytes, **options) -> list[bytes]:
    return [event async for event in sse_data(pieces(*parts), **options)]


async def test_events_split_on_newline_bytes_only():
    text = json.dumps({"text": SEPARATORS + "\x1c\x1d\x1e\x0b\x0c"}, ensure_ascii=False).encode()
    # Cut inside a multi-byte character and inside the line ending: nothing is decoded before the event is whole.
    stream = b"data: " + text + b"\r\n\r\n: a comment\n\ndata:[DONE]\n\n"
    cut = stream.index("\u2028".encode()) + 1
    events = await collect(stream[:cut], stream[cut : cut + 7], stream[cut + 7 :])
    assert events == [text, b"[DONE]"]
    assert json.loads(events[0])["text"].startswith(SEPARATORS)


async def test_multi_line_data_joins_and_an_unterminated_last_event_still_counts():
    assert await collect(b"data: a\ndata: b\n\ndata: c") == [b"a\nb", b"c"]


async def test_a_runaway_event_is_refused():
    with pytest.raises(ValueError):
        await collect(b"data: " + b"x" * 2000, b"x" * 2000, max_event_bytes=1000)


@pytest.fixture
async def stub():
    engine = FakeEngine(EngineConfig(rules=SCRIPT))
    async with served(engine) as url:
        engine.url = url
        yield engine


def events_of(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]


async def test_line_separators_inside_a_token_arrive_intact(stub):
    records = AccessRecords()
    with records.attached():
        async with in_process_gateway(stub.url) as (url, _):
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                response = await client.post(
                    COMPLETIONS, json={"model": "stub", "prompt": "separators", "stream": True, "max_tokens": 5}
                )
    events = events_of(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert not any("error" in chunk for chunk in chunks), chunks
    text = "".join(choice["text"] for chunk in chunks for choice in chunk["choices"])
    assert text == SEPARATORS + " end"
    assert records.statuses() == [200]


async def test_an_engine_error_event_is_forwarded_and_logged_as_a_failure(stub):
    records = AccessRecords()
    with records.attached():
        async with in_process_gateway(stub.url) as (url, _):
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                response = await client.post(
                    COMPLETIONS, json={"model": "stub", "prompt": "error", "stream": True, "max_tokens": 5}
                )
    events = events_of(response)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "upstream_error" and error["code"] == "upstream_error"
    assert "/var/log" not in error["message"] and "stub" in error["message"]  # the variant, not the engine's text
    assert json.loads(events[0])["choices"][0]["text"] == "partial"
    assert records.statuses() == [502]


async def test_an_engine_500_reaches_the_client_without_its_internal_details(stub):
    async with in_process_gateway(stub.url) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post(COMPLETIONS, json={"model": "stub", "prompt": "fail", "max_tokens": 5})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert not any(secret in message for secret in ("/opt/internal", "10.1.2.3", "Traceback")), message


async def test_a_down_engine_is_a_503_that_names_no_url(stub):
    async with in_process_gateway(stub.url) as (url, app):
        backend = app.state.gateway.backends["stub"]
        backend.remote_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there any more
        assert await wait_until(lambda: not backend.up and backend.last_error, 10)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post(COMPLETIONS, json={"model": "stub", "prompt": "hi", "max_tokens": 5})
    assert response.status_code == 503
    assert "127.0.0.1" not in response.json()["error"]["message"]
    assert "http://" not in response.json()["error"]["message"]


# --- a real vLLM engine whose engine core dies mid-stream --------------------------------------------------------


def engine_cores(port: int) -> list[psutil.Process]:
    server = next(
        psutil.Process(c.pid)
        for c in psutil.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
    )
    cores = []
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
                cores.append(child)
    return cores


@pytest.mark.slow
async def test_an_engine_core_killed_mid_stream_ends_the_stream_with_an_error(tiny_qwen3_moe, tmp_path):
    records = AccessRecords()
    with vllm_server(tiny_qwen3_moe, tmp_path / "engine", served_name="tiny") as engine_url:
        cores = engine_cores(int(engine_url.rsplit(":", 1)[1]))
        assert cores, "no EngineCore process under the vLLM server"
        with records.attached():
            async with in_process_gateway(engine_url) as (url, _):
                body = {
                    "model": "stub",
                    "prompt": "Once upon a time",
                    "stream": True,
                    "max_tokens": 256,
                    "ignore_eos": True,
                }
                events: list[str] = []
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    async with client.stream("POST", COMPLETIONS, json=body) as response:
                        assert response.status_code == 200
                        async for line in response.aiter_lines():
                            if line.startswith("data: "):
                                events.append(line[6:])
                                if len(events) == 2:
                                    for core in cores:
                                        core.kill()
                assert events[-1] == "[DONE]"
                last = json.loads(events[-2])
                assert "error" in last, f"the stream ended as if complete: {events[-3:]}"
                assert last["error"]["type"] in ("upstream_error", "service_unavailable")
                deadline = time.monotonic() + 5
                while not records.statuses() and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
        statuses = records.statuses()
        assert statuses and statuses[-1] >= 500, statuses
