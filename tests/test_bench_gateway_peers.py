"""The pieces of bench/gateway_peers.py work (not a benchmark: nothing here is timed or compared).

The fast stub engine answers a chat completion with 8 tokens and top-5 logprobs, streams `max_tokens` tokens
in chunked SSE that the bench's own streaming client reads to [DONE]; wrk's summary parses; the table renders;
the wrk script sends the key.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from testkit.fast_engine import TOKENS, Answers, StubProtocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import gateway_peers  # noqa: E402

pytestmark = pytest.mark.timeout(30)

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:9/v1/chat/completions
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    61.00us   20.00us   1.20ms   90.00%
  Latency Distribution
     50%   58.00us
     75%   66.00us
     90%   80.00us
     99%  150.00us
  160000 requests in 10.00s, 500.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  16000.50
Transfer/sec:     50.00MB
"""


async def test_stub_answers_and_streams_to_the_bench_client():
    server = await asyncio.get_running_loop().create_server(lambda: StubProtocol(Answers("stub", 16)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps(gateway_peers.CHAT).encode()
        for _ in range(2):  # keep-alive: the second request on the same connection
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answer = json.loads(await reader.readexactly(length))
            content = answer["choices"][0]["logprobs"]["content"]
            assert len(content) == TOKENS and all(len(entry["top_logprobs"]) == 5 for entry in content)
        writer.close()
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        result = await asyncio.wait_for(gateway_peers.stream_load(url, {"Authorization": "Bearer k"}, 2, 3, 0.2, 4), 10)
        assert 1 <= result["streams"] <= 5 and 0 < result["ttft_p50"] <= result["total_p50"]
    finally:
        server.close()


def test_wrk_summary_parses():
    parsed = gateway_peers.parse_wrk(WRK_OUTPUT)
    assert parsed == {"requests": 160000, "rps": 16000.5, "p50": pytest.approx(58e-6), "errors": 3}


def test_wrk_script_sends_the_key(tmp_path):
    script = gateway_peers.wrk_script(tmp_path, {"Authorization": "Bearer sk-1"}).read_text()
    assert "wrk.headers[ [==[Authorization]==] ] = [==[Bearer sk-1]==]" in script
    assert '"top_logprobs":5' in script


def test_table_renders_ratios_to_the_reference():
    rows = [
        gateway_peers.Row(
            "direct", rps=10000, p50=50e-6, cpu_per_request=20e-6, ttft1=1e-4, ttft32=1e-3, after_first1=0.01
        ),
        gateway_peers.Row(
            "gateway", rps=500, p50=2e-3, cpu_per_request=1.9e-3, ttft1=3e-3, ttft32=5e-2, after_first1=0.2
        ),
        gateway_peers.Row(
            "vllm-router", rps=2000, p50=0.6e-3, cpu_per_request=0.4e-3, ttft1=5e-4, ttft32=1e-2, after_first1=0.02
        ),
    ]
    table = gateway_peers.render(rows, 101)
    assert "| gateway | 500 (0.25x) | 2.000 ms | 1.950 ms (3.55x) | 1.900 ms (4.75x) |" in table
    assert "| vllm-router | 2,000 (1.00x) |" in table
    assert "1900.0 us (19.00x)" in table  # added per token: (0.2 - 0.01) / 100 against (0.02 - 0.01) / 100


def test_scaling_table_gives_the_ratio_to_one_worker_of_the_same_run():
    results = [
        {"run": 1, "workers": 1, "rps": 500.0, "cpu_per_request": 1e-3, "gateway_cores": 0.5, "load_side_cores": 0.05},
        {
            "run": 1,
            "workers": 2,
            "rps": 850.0,
            "cpu_per_request": 1.1e-3,
            "gateway_cores": 0.93,
            "load_side_cores": 0.08,
        },
    ]
    table = gateway_peers.render_scaling(results, 2)
    assert "| 1 | 1 (1) | 500 | 1.000 ms | 0.50 | 0.05 | - | - |" in table
    assert "| 1 | 2 (2) | 850 | 1.100 ms | 0.93 | 0.08 | **1.70x** (target >= 1.6x) | 0.91 |" in table


def test_a_gateway_that_fails_its_start_checks_is_stopped_with_its_workers(tmp_path, monkeypatch):
    """The bench raised out of launch() with the gateway (supervisor and workers) still serving."""
    import time

    import psutil

    tree: list[psutil.Process] = []

    def failing_check(pid, count, log, timeout):
        tree.append(psutil.Process(pid))
        tree.extend(tree[0].children(recursive=True))
        raise RuntimeError("start check failed")

    monkeypatch.setattr(gateway_peers, "wait_workers", failing_check)
    stub, stub_url = gateway_peers.start_stub(tmp_path)
    try:
        direct = gateway_peers.Target("direct", stub_url + "/v1/chat/completions", {}, None)
        gateway_peers.wait_answering(direct, tmp_path / "stub.log", 30)
        with pytest.raises(RuntimeError, match="start check failed"):
            gateway_peers.launch("gateway", stub_url, tmp_path, tmp_path, False, workers=2)
        assert tree

        def alive():
            return [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

        deadline = time.monotonic() + 30
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive() == []
    finally:
        gateway_peers.stop(stub)
