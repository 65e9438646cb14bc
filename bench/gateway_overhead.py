"""How much the gateway costs: the same load sent straight to a vLLM server and through the gateway.

Starts one vLLM CPU server (the tiny test model unless --model is given) and a
gateway (`moeprune serve`) whose only variant is that server (`url:`), then
sends `--requests` short completions per mode at `--concurrency`, in
alternating blocks so that machine noise hits every mode alike. Modes:
  direct           plain requests to vLLM
  direct+logprobs  requests to vLLM asking for top-5 logprobs (what the gateway asks for)
  gateway          requests through the gateway (reliability flags on), with an API key: every
                   check of docs/gateway.md "Security" is on (key in middleware, body cap, field
                   allowlist, bounds, admission, deadline, send timeout)
Prints throughput ratios (goal >= 0.95) and added p50/p95 latency (goal <= 5 ms p50).

    .venv/bin/python bench/gateway_overhead.py [--requests 200] [--concurrency 8] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engines.command import EngineSpec, launch_command, launch_environment  # noqa: E402
from app.engines.process import free_port  # noqa: E402
from testkit.vllm_server import stop_process_group  # noqa: E402

MODES = ("direct", "direct+logprobs", "gateway")


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    stop_process_group(proc, grace=60)


async def run_block(client: httpx.AsyncClient, url: str, body: dict, headers: dict, count: int, concurrency: int):
    latencies: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            started = time.perf_counter()
            response = await client.post(url, json={**body, "prompt": f"Question {i}: which organ"}, headers=headers)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started, latencies


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def check_auth(gateway_url: str, api_key: str) -> None:
    """The gateway under test must be the hardened one: no key is a 401, the bench's key works."""
    body = {"model": "tiny", "max_tokens": 1, "temperature": 0, "prompt": "hi"}
    async with httpx.AsyncClient(timeout=120) as client:
        refused = await client.post(gateway_url + "/v1/completions", json=body)
        if refused.status_code != 401:
            raise SystemExit(f"the gateway answered {refused.status_code} without an API key (expected 401)")
        accepted = await client.post(
            gateway_url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {api_key}"}
        )
        if accepted.status_code != 200:
            raise SystemExit(f"the gateway answered {accepted.status_code} with the key: {accepted.text[:500]}")


async def measure(engine_url: str, gateway_url: str, gateway_pid: int, api_key: str, args) -> dict:
    # Only fields the gateway's allowlist accepts (app/api/schemas.py).
    base = {"model": "tiny", "max_tokens": args.max_tokens, "temperature": 0}
    keyed = {"Authorization": f"Bearer {api_key}"}
    targets = {
        "direct": (engine_url + "/v1/completions", base, {}),
        "direct+logprobs": (engine_url + "/v1/completions", {**base, "logprobs": 5}, {}),
        "gateway": (gateway_url + "/v1/completions", base, keyed),
    }
    results = {mode: {"wall": 0.0, "latencies": []} for mode in MODES}
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for mode in MODES:  # warm-up, not measured
            await run_block(client, *targets[mode], args.concurrency * 2, args.concurrency)
        blocks = max(1, args.requests // args.block)
        for index in range(blocks):
            order = MODES if index % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                cpu_before = cpu_seconds(gateway_pid)
                wall, latencies = await run_block(client, *targets[mode], args.block, args.concurrency)
                if mode == "gateway":  # the gateway's own CPU cost, independent of machine load
                    results[mode]["cpu"] = results[mode].get("cpu", 0.0) + cpu_seconds(gateway_pid) - cpu_before
                results[mode]["wall"] += wall
                results[mode]["latencies"] += latencies
    return results


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(results: dict) -> None:
    rows = {}
    for mode, result in results.items():
        lat = result["latencies"]
        rows[mode] = {
            "rps": len(lat) / result["wall"],
            "p50": percentile(lat, 50) * 1000,
            "p95": percentile(lat, 95) * 1000,
            "n": len(lat),
        }
        print(
            f"{mode:16s} n={len(lat):4d}  {rows[mode]['rps']:7.1f} req/s  p50 {rows[mode]['p50']:7.1f} ms  "
            f"p95 {rows[mode]['p95']:7.1f} ms"
        )
    gateway = rows["gateway"]
    print(f"gateway process CPU per request: {results['gateway']['cpu'] / gateway['n'] * 1000:.2f} ms")
    for reference in ("direct", "direct+logprobs"):
        ref = rows[reference]
        print(
            f"gateway vs {reference:16s} throughput ratio {gateway['rps'] / ref['rps']:.3f}  "
            f"added p50 {gateway['p50'] - ref['p50']:+.1f} ms  added p95 {gateway['p95'] - ref['p95']:+.1f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="checkpoint dir (default: build the tiny test model)")
    parser.add_argument("--requests", type=int, default=200, help="requests per mode")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--block", type=int, default=25, help="requests per alternating block")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="OUT",
        help="record the gateway with py-spy (installed separately) into OUT (speedscope JSON) "
        "while the measured blocks run",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from testkit.tiny_models import build_tiny_model

            model = build_tiny_model("qwen3_moe", tmp / "tiny")
        spec = EngineSpec(model=str(model), port=free_port(), served_name="tiny")
        engine_log = open(tmp / "engine.log", "wb")
        engine = subprocess.Popen(
            launch_command(spec),
            env=launch_environment(spec, tmp / "scratch"),
            stdout=engine_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        gateway = None
        try:
            engine_url = f"http://127.0.0.1:{spec.port}"
            wait_for(engine_url + "/health", engine)
            (tmp / "variants.yaml").write_text(f"variants:\n  tiny:\n    url: {engine_url}\n")
            port = free_port()
            api_key = secrets.token_urlsafe(32)
            gateway_env = {**os.environ, "MOEPRUNE_API_KEYS": api_key}
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "moeprune.cli",
                    "serve",
                    "--config",
                    str(tmp / "variants.yaml"),
                    "--port",
                    str(port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(tmp / "gateway.log", "wb"),
                env=gateway_env,
                start_new_session=True,
            )
            gateway_url = f"http://127.0.0.1:{port}"
            wait_for(gateway_url + "/ready", gateway)
            asyncio.run(check_auth(gateway_url, api_key))
            print(
                f"{args.requests} requests per mode, concurrency {args.concurrency}, "
                f"max_tokens {args.max_tokens}, blocks of {args.block}, alternating"
            )
            spy = None
            if args.py_spy:
                # PY_SPY_ARGS: extra py-spy flags, e.g. "--gil" (only samples holding the GIL: CPU, not waits).
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--pid",
                        str(gateway.pid),
                        "--rate",
                        "250",
                        *os.environ.get("PY_SPY_ARGS", "").split(),
                        "--format",
                        "speedscope",
                        "--output",
                        str(args.py_spy),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            try:
                report(asyncio.run(measure(engine_url, gateway_url, gateway.pid, api_key, args)))
            finally:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                    spy.wait(timeout=60)
        finally:
            if gateway is not None:
                stop(gateway)
            stop(engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
