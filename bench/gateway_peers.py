"""This gateway against its peers on one core: the same fast stub engine behind each, the field's load tool in front.

Targets (each behind the same stub engine, testkit/fast_engine.py, whose answer is
an 8-token chat completion with top-5 logprobs on every token):
  direct        the stub itself (the floor)
  gateway       `moeprune serve`, API keys on, reliability flags computed (a `url:` variant)
  gateway/<t>   the same with another upstream transport (bench/upstream_transports.py): httpcore, aiohttp
  gateway@DIR   the gateway of another checkout (a git worktree at DIR), to compare two versions in one run
  litellm       LiteLLM's proxy (`litellm[proxy]`), master key on
  vllm-router   vllm-project's Rust router (PyPI `vllm-router`): the reference

Pinning: each gateway runs under `taskset -c 0`; the stub, `wrk` and this script on CPU 1.
Peers are installed from PyPI into their own virtual environments under --venvs (skipped with a message when
they cannot be installed); nothing leaves the loopback interface at run time.

Per target:
  req/s        `wrk -t1 -c32` for --duration seconds
  p50 @1       `wrk -t1 -c1 --latency` for --latency-duration seconds
  CPU/req      the gateway's utime+stime (from /proc/<pid>/stat, its whole process tree) over the req/s run
  TTFT @1/@32  streaming: time to the first SSE event of 8-token streams, p50, with this script's own client
               (asyncio, on CPU 1 with the stub), 1 and 32 connections
  per token    on --stream-tokens streams at 1 connection: (time after the first token through the target, p50)
               - (the same, direct), / tokens; and the gateway's CPU time per token streamed
Every number is also given as a ratio to vllm-router's in the same run; latencies as added to the stub's.

    python bench/gateway_peers.py [--runs 2] [--targets direct,gateway,litellm,vllm-router] [--json OUT]

Worker scaling (`--scaling N`, instead of the table): the gateway as one process pinned to CPU 0, then with
`--workers N` pinned to CPUs 0..N-1, the same stub and `wrk -c32` (still on CPU 1), alternating, --runs times:
req/s, the ratio N-workers / 1-worker (target >= 0.8 N), the gateway's CPU per request (all its processes), and
what the load side (the stub and wrk) used of the cores, since with N = 2 here it shares CPU 1 with a worker.

    python bench/gateway_peers.py --scaling 2 --runs 2 [--duration 10]

The gateway's own code per request (`--asgi N`, instead of the table): each gateway target's ASGI app driven in
a process of its own (pinned to CPU 0, the stub on CPU 1), without uvicorn or a client socket: N sequential chat
requests (the body above, key on, flags computed) a round, its process CPU time per request, the minimum over
--runs rounds (the least disturbed by the neighbours). Targets alternate, so give each twice to pair them:

    python bench/gateway_peers.py --asgi 2000 --runs 5 --targets gateway@/tmp/base,gateway,gateway@/tmp/base,gateway
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.engines.process import free_port  # noqa: E402
from app.workers.worker import is_worker_command  # noqa: E402

GATEWAY_CPU = "0"
LOAD_CPU = 1
VENVS = Path.home() / ".cache" / "moe-prune-serve" / "bench-venvs"
PEERS = {  # name -> (requirement, executable in the venv's bin)
    "litellm": ("litellm[proxy]", "litellm"),
    "vllm-router": ("vllm-router", "vllm-router"),
}
ALL_TARGETS = ("direct", "gateway", "gateway/httpcore", "gateway/aiohttp", "litellm", "vllm-router")
REFERENCE = "vllm-router"
MODEL = "stub"
CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Which organ produces insulin?"}],
    "max_tokens": 8,
    "temperature": 0,
    "logprobs": True,
    "top_logprobs": 5,
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOKENS_SHORT = 8  # the streams whose time to first token is measured


# ---------------------------------------------------------------------------------------------- environments


def peer_executable(name: str, venvs: Path, install: bool) -> Path | None:
    """The peer's command in its own venv, installed there first when missing; None (and why) when impossible."""
    requirement, command = PEERS[name]
    venv = venvs / name
    executable = venv / "bin" / command
    if executable.exists():
        return executable
    if not install:
        print(f"skipping {name}: not installed in {venv} (run without --no-install to install it)")
        return None
    print(f"installing {requirement} into {venv} (once) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = shutil.which("python3") or sys.executable
    log = venvs / f"{name}.install.log"
    try:
        with open(log, "wb") as out:
            subprocess.run(
                [python, "-m", "venv", str(venv)], check=True, stdout=out, stderr=subprocess.STDOUT, timeout=300
            )
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", requirement],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=1800,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"skipping {name}: could not install {requirement!r} ({exc}); see {log}")
        shutil.rmtree(venv, ignore_errors=True)
        return None
    if not executable.exists():
        print(f"skipping {name}: {requirement!r} installed no {command!r} command; see {log}")
        return None
    return executable


def peer_version(name: str, venvs: Path) -> str:
    python = venvs / name / "bin" / "python"
    package = PEERS[name][0].split("[")[0]
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    return "?"


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(
            "this bench needs `wrk` (the HTTP load generator): on Debian/Ubuntu "
            "`apt-get install -y wrk`, on macOS `brew install wrk`"
        )
    return path


# ---------------------------------------------------------------------------------------------- processes


@dataclass
class Target:
    name: str
    url: str  # the chat completions URL
    headers: dict[str, str]
    proc: subprocess.Popen | None  # None for `direct` (the stub's own process is measured instead)
    pid: int = 0
    version: str = ""


def start(
    command: list[str], log: Path, env: dict[str, str] | None = None, cpu: str | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    prefix = ["taskset", "-c", cpu] if cpu is not None else []
    with open(log, "wb") as out:
        return subprocess.Popen(
            prefix + command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=cwd
        )


def start_stub(work: Path, stream_tokens: int | None = None) -> tuple[subprocess.Popen, str]:
    """The fast stub engine (testkit/fast_engine.py) on a free loopback port, its output in work/stub.log:
    the process and its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "testkit.fast_engine", "--port", str(port), "--model", MODEL]
    if stream_tokens is not None:
        command += ["--stream-tokens", str(stream_tokens)]
    proc = start(command, work / "stub.log", {**os.environ, "PYTHONPATH": str(REPO)})
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 20 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def post(url: str, headers: dict[str, str], body: dict, timeout: float = 10) -> tuple[int, bytes]:
    import httpx

    response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    return response.status_code, response.content


def wait_answering(target: Target, log: Path, timeout: float) -> None:
    """Until the target answers the bench's chat request with a 200 (its engine included)."""
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if target.proc is not None and target.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {target.proc.returncode}: {log.read_text()[-2000:]}")
        try:
            status, content = post(target.url, target.headers, CHAT)
            if status == 200 and b'"choices"' in content:
                return
            last = f"{status} {content[:300]!r}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"{target.name} did not answer in {timeout:.0f}s (last: {last}); log: {log.read_text()[-2000:]}")


def launch(
    name: str,
    stub_url: str,
    work: Path,
    venvs: Path,
    install: bool,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
) -> Target | None:
    """Start one gateway (pinned to GATEWAY_CPU; `workers` > 1: CPUs 0..workers-1) in front of the stub; None
    when its peer is not installable. A gateway that fails its start checks is stopped before the error goes on
    (it was left serving, its workers included, when a check raised)."""
    started: list[subprocess.Popen] = []
    try:
        return _launch(name, stub_url, work, venvs, install, extra_env, workers, started)
    except BaseException:
        for proc in started:
            stop(proc)
        raise


def _launch(
    name: str,
    stub_url: str,
    work: Path,
    venvs: Path,
    install: bool,
    extra_env: dict[str, str] | None,
    workers: int,
    started: list[subprocess.Popen],
) -> Target | None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = work / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}.log"
    key = "sk-bench-" + secrets.token_urlsafe(16)
    bearer = {"Authorization": f"Bearer {key}"}
    if name.startswith("gateway"):
        name_part, _, source = name.partition("@")  # gateway@DIR: another checkout's code
        source_dir = Path(source).resolve() if source else REPO
        config = work / "variants.yaml"
        config.write_text(f"variants:\n  {MODEL}:\n    url: {stub_url}\n")
        # The per-key limit (32 sequences) raised: 32 closed-loop connections would race each slot's release.
        env = {
            **os.environ,
            "MOEPRUNE_API_KEYS": key,
            "MOEPRUNE_WORK_DIR": str(work / "engines"),
            "MOEPRUNE_MAX_IN_FLIGHT_PER_KEY": "64",
            "PYTHONPATH": str(source_dir),
            **(extra_env or {}),
        }
        transport = name_part.partition("/")[2] or "engine"
        command = [
            sys.executable,
            "-m",
            "bench.upstream_transports",
            "--transport",
            transport,
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ]
        cpus = GATEWAY_CPU
        if workers > 1:
            command += ["--workers", str(workers)]
            cpus = f"0-{workers - 1}"
        proc = start(command, log, env, cpus, cwd=source_dir)
        started.append(proc)
        target = Target(name, base + "/v1/chat/completions", bearer, proc)
        wait_answering(target, log, 120)
        wait_workers(proc.pid, workers if workers > 1 else 0, log, 60)
        import httpx  # keys on: the bench refuses to measure a gateway that answers without one

        refused = httpx.post(target.url, json=CHAT, timeout=10).status_code
        if refused != 401:
            stop(proc)
            raise RuntimeError(f"{name} answered {refused} without an API key (expected 401)")
        target.version = "engine transport: " + transport + (f" ({source_dir})" if source else "")
    elif name == "litellm":
        executable = peer_executable(name, venvs, install)
        if executable is None:
            return None
        config = work / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: {stub_url}/v1\n"
            "      api_key: not-used\n"
            "general_settings:\n"
            f"  master_key: {key}\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
        )
        env = {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        proc = start(
            [
                str(executable),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            log,
            env,
            GATEWAY_CPU,
        )
        started.append(proc)
        target = Target(name, base + "/v1/chat/completions", bearer, proc)
        wait_answering(target, log, 300)
        target.version = "litellm " + peer_version(name, venvs)
    elif name == "vllm-router":
        executable = peer_executable(name, venvs, install)
        if executable is None:
            return None
        proc = start(
            [
                str(executable),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--worker-urls",
                stub_url,
                "--policy",
                "round_robin",
                "--log-level",
                "error",
            ],
            log,
            dict(os.environ),
            GATEWAY_CPU,
        )
        started.append(proc)
        target = Target(name, base + "/v1/chat/completions", {}, proc)
        wait_answering(target, log, 180)
        target.version = "vllm-router " + peer_version(name, venvs)
    else:
        raise SystemExit(f"unknown target {name!r}; choose from {', '.join(ALL_TARGETS)}")
    target.pid = proc.pid
    return target


def wait_workers(pid: int, count: int, log: Path, timeout: float) -> None:
    """Until `count` worker processes (multiprocessing's spawned children) run under the gateway's `pid`."""
    deadline = time.monotonic() + timeout
    while count and time.monotonic() < deadline:
        children = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                children += (task / "children").read_text().split()
        spawned = 0
        for child in children:
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                spawned += is_worker_command(command)
        if spawned >= count:
            time.sleep(2)  # a worker that just started still builds its app; the warm-up follows anyway
            return
        time.sleep(0.5)
    if count:
        raise RuntimeError(
            f"the gateway did not start {count} workers in {timeout:.0f}s; log: {log.read_text()[-2000:]}"
        )


# ---------------------------------------------------------------------------------------------- measuring


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` and every process below it, from /proc/<pid>/stat (threads are in their process)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    pending += [int(child) for child in (task / "children").read_text().split()]
    return total / CLK_TCK


LATENCY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> dict:
    """requests, req/s, p50 (seconds, with --latency) and errors from wrk's summary."""
    out: dict = {"errors": 0}
    if match := re.search(r"(\d+) requests in", text):
        out["requests"] = int(match.group(1))
    if match := re.search(r"Requests/sec:\s+([\d.]+)", text):
        out["rps"] = float(match.group(1))
    if match := re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        out["p50"] = float(match.group(1)) * LATENCY_UNITS[match.group(2)]
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        out["errors"] += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        out["errors"] += sum(int(g) for g in match.groups())
    return out


def wrk_script(work: Path, headers: dict[str, str]) -> Path:
    def lua(text: str) -> str:
        return "[==[" + text + "]==]"

    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {lua(json.dumps(CHAT, separators=(',', ':')))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    # a space after "[": `t[[==[` would open a long string and call `t` with it
    lines += [f"wrk.headers[ {lua(name)} ] = {lua(value)}" for name, value in headers.items()]
    script = work / f"chat-{secrets.token_hex(4)}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def run_wrk(url: str, script: Path, connections: int, seconds: float, latency: bool = False) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script)]
    command += ["--latency"] if latency else []
    done = subprocess.run(command + [url], capture_output=True, text=True, timeout=seconds + 60)
    result = parse_wrk(done.stdout)
    if "rps" not in result:
        raise RuntimeError(f"wrk gave no result: {done.stdout}\n{done.stderr}")
    return result


async def _stream_once(host: str, port: int, request: bytes, reader_writer: list) -> tuple[float, float] | None:
    """(time to first SSE event, total) for one streamed chat request on a kept-alive connection; None (and the
    connection dropped) when the answer is not a 200."""
    if not reader_writer:
        reader_writer += await asyncio.open_connection(host, port)
    reader, writer = reader_writer
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        status_line = head.split(b"\r\n")[0].decode(errors="replace")
        print(f"    a stream was refused: {status_line}", flush=True)
        writer.close()
        reader_writer.clear()
        return None
    chunked = b"transfer-encoding: chunked" in head.lower()
    if not chunked:
        raise RuntimeError(f"streaming answer is not chunked: {head[:300]!r}")
    first = 0.0
    data = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        piece = await reader.readexactly(size + 2)
        if size == 0:
            break
        if not first and b"data:" in piece:
            first = time.perf_counter() - started
        data = (data + piece[:-2])[-64:]
    if b"[DONE]" not in data:
        raise RuntimeError(f"stream ended without [DONE]: ...{data!r}")
    return first, time.perf_counter() - started


def stream_request(url: str, headers: dict[str, str], tokens: int) -> tuple[str, int, bytes]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    body = json.dumps({**CHAT, "stream": True, "max_tokens": tokens}, separators=(",", ":")).encode()
    lines = [
        f"POST /{path} HTTP/1.1",
        f"Host: {hostport}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Accept: text/event-stream",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return host, int(port), ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def stream_load(
    url: str, headers: dict[str, str], connections: int, tokens: int, seconds: float, max_streams: int
) -> dict:
    """Closed loop: `connections` clients streaming `tokens`-token answers one after another for `seconds`
    (at most `max_streams`)."""
    host, port, request = stream_request(url, headers, tokens)
    firsts: list[float] = []
    totals: list[float] = []
    refused = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal refused
        connection: list = []
        try:
            while time.perf_counter() < deadline and len(totals) < max_streams:
                timing = await _stream_once(host, port, request, connection)
                if timing is None:
                    refused += 1
                    await asyncio.sleep(0.01)
                    continue
                firsts.append(timing[0])
                totals.append(timing[1])
        finally:
            if connection:
                connection[1].close()

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(connections))), seconds + 60)
    after_first = [total - first for first, total in zip(firsts, totals, strict=True)]
    return {
        "streams": len(totals),
        "refused": refused,
        "ttft_p50": statistics.median(firsts),
        "total_p50": statistics.median(totals),
        "after_first_p50": statistics.median(after_first),
    }


@dataclass
class Row:
    name: str
    version: str = ""
    rps: float = 0.0
    p50: float = 0.0
    cpu_per_request: float = 0.0
    ttft1: float = 0.0
    ttft32: float = 0.0
    after_first1: float = 0.0  # a long stream's time after its first token, one connection
    cpu_per_token: float = 0.0
    streams: dict = field(default_factory=dict)
    errors: int = 0


def measure(target: Target, work: Path, args) -> Row:
    script = wrk_script(work, target.headers)
    row = Row(target.name, target.version)
    run_wrk(target.url, script, 32, 2)  # warm-up
    cpu_before = tree_cpu_seconds(target.pid)
    loaded = run_wrk(target.url, script, 32, args.duration)
    cpu = tree_cpu_seconds(target.pid) - cpu_before
    row.rps, row.errors = loaded["rps"], loaded["errors"]
    row.cpu_per_request = cpu / max(loaded["requests"], 1)
    single = run_wrk(target.url, script, 1, args.latency_duration, latency=True)
    row.p50, row.errors = single["p50"], row.errors + single["errors"]
    short, budget = TOKENS_SHORT, (target.url, target.headers)
    one = asyncio.run(stream_load(*budget, 1, short, args.stream_duration, args.max_streams))
    many = asyncio.run(stream_load(*budget, 32, short, args.stream_duration, args.max_streams))
    cpu_before = tree_cpu_seconds(target.pid)
    long = asyncio.run(stream_load(*budget, 1, args.stream_tokens, args.stream_duration, args.max_streams))
    cpu = tree_cpu_seconds(target.pid) - cpu_before
    row.ttft1, row.ttft32, row.after_first1 = one["ttft_p50"], many["ttft_p50"], long["after_first_p50"]
    row.cpu_per_token = cpu / (long["streams"] * args.stream_tokens)
    row.streams = {"short_at1": one, "short_at32": many, "long_at1": long}
    row.errors += one["refused"] + many["refused"] + long["refused"]
    print(
        f"  {target.name:18s} {row.rps:9.0f} req/s  p50 {row.p50 * 1e3:6.2f} ms  "
        f"CPU/req {row.cpu_per_request * 1e3:6.3f} ms  TTFT@1 {row.ttft1 * 1e3:6.2f} ms  "
        f"TTFT@32 {row.ttft32 * 1e3:7.2f} ms  after first token ({args.stream_tokens}) "
        f"{row.after_first1 * 1e3:7.1f} ms  CPU/token {row.cpu_per_token * 1e6:6.1f} us  errors {row.errors}",
        flush=True,
    )
    return row


# ---------------------------------------------------------------------------------------------- report


def _ratio(value: float, reference: float | None) -> str:
    if reference is None or reference <= 0:
        return ""
    return f" ({value / reference:.2f}x)"


def render(rows: list[Row], tokens: int) -> str:
    """The markdown tables: added latency is the target's minus the stub's; (Nx) is the ratio to vllm-router."""
    by_name = {row.name: row for row in rows}
    direct = by_name.get("direct")
    ref = by_name.get(REFERENCE)

    def added(row: Row, attr: str) -> float | None:
        return None if direct is None else getattr(row, attr) - getattr(direct, attr)

    def ms(value: float | None, reference: float | None = None) -> str:
        if value is None:
            return "-"
        return f"{value * 1e3:.3f} ms" + _ratio(value, reference)

    def us(value: float | None, reference: float | None = None) -> str:
        if value is None:
            return "-"  # a reference under 1 us is within noise: no ratio
        return f"{value * 1e6:.1f} us" + (_ratio(value, reference) if reference and reference > 1e-6 else "")

    per_token = {
        row.name: (row.after_first1 - direct.after_first1) / max(tokens - 1, 1) if direct else None for row in rows
    }
    lines = [
        "| gateway (one core) | req/s at 32 conns | p50 at 1 conn | added p50 | CPU per request |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.rps:,.0f}{_ratio(row.rps, ref.rps if ref else None)} | {ms(row.p50)} | "
            f"{ms(added(row, 'p50'), added(ref, 'p50') if ref else None) if row is not direct else '-'} | "
            f"{ms(row.cpu_per_request, ref.cpu_per_request if ref else None)} |"
        )
    lines += [
        "",
        f"Streaming: time to first token on {TOKENS_SHORT}-token streams; per token on {tokens}-token "
        "streams at 1 connection (the time after the first token, less the stub's, per token; "
        "CPU: the gateway's, per token streamed):",
        "",
        "| gateway | TTFT p50 at 1 | added | TTFT p50 at 32 | added | added per token | CPU per token |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        token = per_token[row.name]
        ref_token = per_token.get(REFERENCE)
        cpu_token = f"{row.cpu_per_token * 1e6:.1f} us" + _ratio(row.cpu_per_token, ref.cpu_per_token if ref else None)
        if row is direct:
            lines.append(f"| {row.name} | {ms(row.ttft1)} | - | {ms(row.ttft32)} | - | - | {cpu_token} |")
            continue
        lines.append(
            f"| {row.name} | {ms(row.ttft1)} | {ms(added(row, 'ttft1'), added(ref, 'ttft1') if ref else None)}"
            f" | {ms(row.ttft32)} | {ms(added(row, 'ttft32'), added(ref, 'ttft32') if ref else None)} | "
            f"{us(token, ref_token)} | {cpu_token} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    model = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def one_run(targets: list[str], args, work: Path) -> list[Row]:
    stub, stub_url = start_stub(work, args.stream_tokens)
    rows = []
    try:
        direct = Target("direct", stub_url + "/v1/chat/completions", {}, None, stub.pid, "testkit/fast_engine.py")
        wait_answering(direct, work / "stub.log", 30)
        for name in targets:
            target = direct if name == "direct" else launch(name, stub_url, work, args.venvs, not args.no_install)
            if target is None:
                continue
            try:
                rows.append(measure(target, work, args))
            finally:
                if target.proc is not None:
                    stop(target.proc)
    finally:
        stop(stub)
    return rows


def children_cpu_seconds() -> float:
    """CPU time of this script's children that have been waited for (each finished wrk run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def throughput(target: Target, stub_pid: int, work: Path, seconds: float) -> dict:
    """req/s at 32 connections, the gateway's CPU per request, and the load side's CPU (stub + wrk) per second."""
    script = wrk_script(work, target.headers)
    run_wrk(target.url, script, 32, 2)  # warm-up
    gateway_before, stub_before, wrk_before = (
        tree_cpu_seconds(target.pid),
        tree_cpu_seconds(stub_pid),
        children_cpu_seconds(),
    )
    started = time.monotonic()
    loaded = run_wrk(target.url, script, 32, seconds)
    elapsed = time.monotonic() - started
    gateway_cpu = tree_cpu_seconds(target.pid) - gateway_before
    load_cpu = tree_cpu_seconds(stub_pid) - stub_before + children_cpu_seconds() - wrk_before
    return {
        "rps": loaded["rps"],
        "errors": loaded["errors"],
        "requests": loaded["requests"],
        "cpu_per_request": gateway_cpu / max(loaded["requests"], 1),
        "gateway_cores": gateway_cpu / elapsed,
        "load_side_cores": load_cpu / elapsed,
        "load": os.getloadavg(),
    }


def scaling(args, work: Path) -> list[dict]:
    """One worker on one core against N workers on N cores, alternating, --runs times; one dict per measurement."""
    stub, stub_url = start_stub(work)
    results = []
    try:
        wait_answering(Target("direct", stub_url + "/v1/chat/completions", {}, None), work / "stub.log", 30)
        for run in range(args.runs):
            for workers in (1, args.scaling):
                target = launch("gateway", stub_url, work, args.venvs, False, workers=workers)
                assert target is not None and target.proc is not None  # the gateway is always installed
                try:
                    result = {"run": run + 1, "workers": workers, **throughput(target, stub.pid, work, args.duration)}
                finally:
                    stop(target.proc)
                results.append(result)
                print(
                    f"  run {run + 1}: {workers} worker(s) on {workers} core(s): {result['rps']:7.0f} req/s  "
                    f"CPU/req {result['cpu_per_request'] * 1e3:6.3f} ms  gateway cores "
                    f"{result['gateway_cores']:.2f}  stub+wrk cores {result['load_side_cores']:.2f}  "
                    f"errors {result['errors']}  load {'/'.join(f'{x:.2f}' for x in result['load'])}",
                    flush=True,
                )
    finally:
        stop(stub)
    return results


def render_scaling(results: list[dict], count: int) -> str:
    """req/s scaling (N workers / 1 worker, same run) and the per-core figure: 1 worker's CPU per request over
    N workers' (1.00: each added core serves as many requests as the first)."""
    lines = [
        "| run | workers (cores) | req/s at 32 conns | gateway CPU per request | gateway cores used | "
        "stub + wrk cores used | req/s scaling (N / 1) | per-core figure (vs 1 worker) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    single: dict[int, dict] = {}
    for result in results:
        if result["workers"] == 1:
            single[result["run"]] = result
            scaled = per_core = "-"
        else:
            one = single[result["run"]]
            scaled = f"**{result['rps'] / one['rps']:.2f}x** (target >= {0.8 * count:.1f}x)"
            per_core = f"{one['cpu_per_request'] / result['cpu_per_request']:.2f}"
        lines.append(
            f"| {result['run']} | {result['workers']} ({result['workers']}) | {result['rps']:,.0f} | "
            f"{result['cpu_per_request'] * 1e3:.3f} ms | {result['gateway_cores']:.2f} | "
            f"{result['load_side_cores']:.2f} | {scaled} | {per_core} |"
        )
    return "\n".join(lines)


def profile(args, work: Path) -> None:
    """The gateway once more, under cProfile, with the req/s load and then the long streams; the top costs."""
    import pstats

    stub, stub_url = start_stub(work, args.stream_tokens)
    try:
        wait_answering(Target("direct", stub_url + "/v1/chat/completions", {}, None), work / "stub.log", 30)
        for load in ("requests", "streams"):
            out = args.profile.with_name(f"{args.profile.stem}-{load}.prof")
            target = launch(
                "gateway",
                stub_url,
                work,
                args.venvs,
                False,
                {"MOEPRUNE_BENCH_CPROFILE": str(out)},
            )
            try:
                if load == "requests":
                    run_wrk(target.url, wrk_script(work, target.headers), 32, args.duration)
                else:
                    asyncio.run(
                        stream_load(target.url, target.headers, 1, args.stream_tokens, args.duration, args.max_streams)
                    )
            finally:
                stop(target.proc)
            print(f"\ncProfile of the gateway under the {load} load ({out}), top 25 by own time:")
            pstats.Stats(str(out)).sort_stats("tottime").print_stats(25)
    finally:
        stop(stub)


def asgi_requests(stub_url: str, count: int, rounds: int, body: dict) -> dict:
    """In the child (the source of this function runs there, with the target's checkout first on sys.path): the
    gateway app with one `url:` variant on the stub, keys on, driven by hand-made ASGI requests; CPU per request."""
    import asyncio
    import json
    import os
    import time

    os.environ["MOEPRUNE_API_KEYS"] = "sk-bench-asgi"
    os.environ["MOEPRUNE_MAX_IN_FLIGHT_PER_KEY"] = "64"
    from app.config.settings import Settings
    from app.config.variants import parse_config
    from app.main import create_app

    content = json.dumps(body).encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", b"Bearer sk-bench-asgi"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]

    async def one(app, state: dict) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "headers": list(headers),
            "state": dict(state),
        }
        sent = {"status": 0}
        pending = [{"type": "http.request", "body": content, "more_body": False}]
        never = asyncio.Event()

        async def receive():
            if pending:
                return pending.pop()
            await never.wait()  # the client stays: the disconnect listener waits until it is cancelled

        async def send(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]

        await app(scope, receive, send)
        return sent["status"]

    async def run() -> dict:
        app = create_app(Settings(), parse_config({"variants": {"stub": {"url": stub_url}}}))
        state: dict = {}
        async with app.router.lifespan_context(app) as lifespan_state:
            state.update(lifespan_state or {})
            backend = app.state.gateway.backends["stub"]
            for _ in range(400):
                if backend.up:
                    break
                await asyncio.sleep(0.05)
            statuses = [await one(app, state) for _ in range(200)]  # warm-up
            cpu = []
            for _ in range(rounds):
                started = time.process_time()
                for _ in range(count):
                    statuses.append(await one(app, state))
                cpu.append((time.process_time() - started) / count)
        failed = sum(status != 200 for status in statuses)
        return {"cpu_per_request_s": min(cpu), "rounds_s": cpu, "failed": failed}

    return asyncio.run(run())  # the access log stays on (a line per request to stderr, as when serving)


def asgi_bench(args, targets: list[str], work: Path) -> list[dict]:
    """`asgi_requests` in a child per target (its checkout's code), alternating as given."""
    import inspect

    stub, stub_url = start_stub(work)
    results = []
    try:
        wait_answering(Target("direct", stub_url + "/v1/chat/completions", {}, None), work / "stub.log", 30)
        for name in targets:
            if not name.startswith("gateway") or "/" in name.partition("@")[0]:
                raise SystemExit(f"--asgi measures gateway targets (gateway, gateway@DIR), not {name!r}")
            source = Path(name.partition("@")[2]).resolve() if "@" in name else REPO
            code = (
                f"import sys, json\nsys.path.insert(0, {str(source)!r})\n{inspect.getsource(asgi_requests)}\n"
                f"print(json.dumps(asgi_requests({stub_url!r}, {args.asgi}, {args.runs}, {CHAT!r})))\n"
            )
            env = {**os.environ, "PYTHONPATH": str(source), "MOEPRUNE_WORK_DIR": str(work / "engines")}
            done = subprocess.run(
                ["taskset", "-c", GATEWAY_CPU, sys.executable, "-c", code],
                capture_output=True,
                text=True,
                env=env,
                cwd=source,
                timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{name}: the ASGI bench failed:\n{done.stderr[-3000:]}")
            result = {"target": name, **json.loads(done.stdout.strip().splitlines()[-1])}
            print(
                f"  {name:32s} CPU per request {result['cpu_per_request_s'] * 1e6:7.1f} us (min of "
                f"{len(result['rounds_s'])} rounds of {args.asgi}; all: "
                f"{', '.join(f'{x * 1e6:.1f}' for x in result['rounds_s'])}), failed {result['failed']}",
                flush=True,
            )
            results.append(result)
    finally:
        stop(stub)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help=f"comma-separated, of {ALL_TARGETS}, or gateway@DIR (the gateway of the checkout at "
        "DIR, e.g. a git worktree of another commit, measured in the same run)",
    )
    parser.add_argument("--runs", type=int, default=1, help="whole runs, each its own table")
    parser.add_argument("--duration", type=float, default=10, help="seconds of the req/s run (32 connections)")
    parser.add_argument("--latency-duration", type=float, default=5, help="seconds of the p50 run (1 connection)")
    parser.add_argument("--stream-duration", type=float, default=4, help="seconds of each streaming run")
    parser.add_argument("--stream-tokens", type=int, default=2000, help="tokens in each long streamed answer")
    parser.add_argument("--max-streams", type=int, default=2000, help="streams per streaming run, at most")
    parser.add_argument("--venvs", type=Path, default=VENVS, help="where the peers' environments live")
    parser.add_argument("--no-install", action="store_true", help="skip peers that are not installed yet")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument(
        "--scaling",
        type=int,
        metavar="N",
        help="instead of the table: the gateway with 1 worker on 1 core against N workers on N "
        "cores (req/s, the ratio, CPU per request), --runs times",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="OUT.prof",
        help="instead of the table: profile the gateway (cProfile) under the req/s load and the "
        "long streams, into OUT-requests.prof and OUT-streams.prof, and print the top costs",
    )
    parser.add_argument(
        "--asgi",
        type=int,
        metavar="N",
        help="instead of the table: each gateway target's app driven in-process without uvicorn, N sequential "
        "requests a round, --runs rounds; CPU per request (min over rounds)",
    )
    args = parser.parse_args()
    targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = sorted(
        name
        for name in set(targets) - set(ALL_TARGETS)
        if not (name.startswith("gateway@") and Path(name[len("gateway@") :]).is_dir())
    )
    if unknown:
        raise SystemExit(f"unknown targets {unknown}; choose from {', '.join(ALL_TARGETS)}")
    if args.asgi:
        os.sched_setaffinity(0, {LOAD_CPU})
        before = machine()
        print(f"{before['cpu']}, {before['cpus']} CPUs, {before['date']}, load average {before['load']}")
        with tempfile.TemporaryDirectory(prefix="gateway-asgi-") as tmp:
            results = asgi_bench(args, targets, Path(tmp))
        after = machine()
        print(f"load average after {after['load']}")
        if args.json:
            args.json.write_text(json.dumps({"before": before, "asgi": results, "after": after}, indent=1) + "\n")
        return 0
    require_wrk()
    if os.cpu_count() < 2:
        raise SystemExit("this bench pins the gateway and the load to two different CPUs: it needs two")
    if args.scaling is not None and not 2 <= args.scaling <= (os.cpu_count() or 1):
        raise SystemExit(f"--scaling {args.scaling}: give 2 to {os.cpu_count()} (one core per worker)")
    os.sched_setaffinity(0, {LOAD_CPU})  # this script, the stub and wrk: CPU 1
    if args.scaling:
        before = machine()
        with tempfile.TemporaryDirectory(prefix="gateway-scaling-") as tmp:
            results = scaling(args, Path(tmp))
        after = machine()
        print()
        print(render_scaling(results, args.scaling))
        print(
            f"\n{before['cpu']}, {before['cpus']} CPUs, {before['date']}; load average (1/5/15 min) before "
            f"{'/'.join(f'{x:.2f}' for x in before['load'])}, after {'/'.join(f'{x:.2f}' for x in after['load'])}"
        )
        if args.json:
            args.json.write_text(
                json.dumps({"machine_before": before, "scaling": results, "machine_after": after}, indent=1) + "\n"
            )
        return 0
    for name in targets:  # install before measuring: an install must not load the machine during a run
        if name in PEERS:
            peer_executable(name, args.venvs, not args.no_install)
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="gateway-profile-") as tmp:
            profile(args, Path(tmp))
        return 0
    report: dict = {"machine_before": machine(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="gateway-peers-") as tmp:
        for index in range(args.runs):
            now = machine()
            print(
                f"run {index + 1} of {args.runs} ({now['date']}, load average "
                f"{'/'.join(f'{x:.2f}' for x in now['load'])})",
                flush=True,
            )
            rows = one_run(targets, args, Path(tmp))
            report["runs"].append([asdict(row) for row in rows])
            print()
            print(render(rows, args.stream_tokens))
            print()
    report["machine_after"] = machine()
    before, after = report["machine_before"], report["machine_after"]
    print(
        f"{before['cpu']}, {before['cpus']} CPUs; load average (1/5/15 min) before "
        f"{'/'.join(f'{x:.2f}' for x in before['load'])}, after {'/'.join(f'{x:.2f}' for x in after['load'])}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
