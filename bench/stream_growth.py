"""Does the gateway's memory grow with a stream's length? Issue 25's target: no per-token allocation growth over a
2,000-token stream. Two measurements, neither needing a hook in the gateway:

(a) in-process, under tracemalloc: the gateway's own streaming relay (`app.serving.stream.relay`, the code that
    parses the engine's SSE, passes each chunk on and feeds the reliability signals' token trace, then assesses
    the answer) driven by the fast stub's own event bytes (testkit/fast_engine.py) through an httpx response, for
    500- and 2,000-token streams, alternating. Per stream: the Python memory still allocated at the last token
    against the first token, per token (what a stream holds per token until it ends), at the last token against
    before the stream, and after the stream against before it (what a stream leaves behind); plus, from one
    extra stream, the source lines that hold the per-token bytes.
(b) from outside: the gateway process (`moeprune serve` as bench/gateway_peers.py starts it: API keys on,
    reliability signals computed, pinned to CPU 0) in front of the fast stub, streamed rounds of 500- and of
    2,000-token chat completions, alternating; its VmRSS and VmHWM (/proc/<pid>/status) after each round.

    python bench/stream_growth.py [--rounds 8] [--streams 8] [--connections 4] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import gateway_peers as peers  # noqa: E402

LENGTHS = (500, 2000)


# ---------------------------------------------------------------------------------------------- arithmetic


def per_token(at_first: int, at_last: int, tokens: int) -> float:
    """Bytes allocated per token between the first token's write and the last one's (tokens - 1 steps)."""
    if tokens < 2:
        raise ValueError(f"a slope needs at least 2 tokens, got {tokens}")
    return (at_last - at_first) / (tokens - 1)


def growth_verdict(
    per_token_by_length: dict[int, list[float]], late_growth_kib: float, inherent: float = 0.0, tolerance: float = 0.1
) -> str:
    """How a stream's memory scales with its length: 'O(1)' when the bytes held per token are ~0, 'O(tokens)'
    when they are a steady amount per token (the same at every length, within `tolerance`, or falling as a
    stream's constant costs spread over more tokens), 'growing' when the amount per token itself rises with the
    length (medians over the streams). `inherent`: bytes per token a stream cannot help holding (the answer's
    own characters, which it hands on at its end), taken off first. Plus whether the process' RSS still grew
    over the later rounds (`late_growth_kib`, see `late_growth`; allowed: 2 MiB, the allocator's give and take
    seen between rounds here)."""
    medians = {length: sorted(values)[len(values) // 2] - inherent for length, values in per_token_by_length.items()}
    short, long = medians[min(medians)], medians[max(medians)]
    if abs(long) < 8:  # under a pointer per token: nothing held per token
        shape = "O(1)" if not inherent else f"O(1) besides the answer's characters ({inherent:.1f} B per token)"
    elif long > short + tolerance * abs(short):
        shape = "growing"
    else:
        shape = "O(tokens)"
    leak = (
        "no RSS growth over the later rounds"
        if late_growth_kib <= 2048
        else f"RSS still grew {late_growth_kib:.0f} KiB over the later rounds"
    )
    return f"{shape}, {leak}"


def late_growth(rows: list[dict]) -> float:
    """KiB the gateway's VmRSS grew between the second quarter of the rounds and the last quarter (medians, so
    that one reading taken while long streams overlapped does not decide): a leak keeps RSS rising, while the
    longest streams' working set is reached in the first rounds and then stays, give or take the allocator."""
    if len(rows) < 4:
        raise ValueError(f"late growth needs at least four readings, got {len(rows)}")
    quarter = len(rows) // 4
    second = sorted(row["VmRSS"] for row in rows[quarter : 2 * quarter])
    last = sorted(row["VmRSS"] for row in rows[-quarter:])
    return last[len(last) // 2] - second[len(second) // 2]


def answer_bytes_per_token(streams: list[dict]) -> float:
    """The answers' UTF-8 bytes per token over the longest streams (the part of a stream's memory it must hold)."""
    longest = max(stream["tokens"] for stream in streams)
    chosen = [stream for stream in streams if stream["tokens"] == longest]
    return sum(stream["answer_bytes"] for stream in chosen) / sum(stream["tokens"] for stream in chosen)


# ---------------------------------------------------------------------------------------------- (a) in-process


def gateway_state(url: str):
    """The gateway's state as `moeprune serve` builds it, with one `url:` variant (its lifespan not run)."""
    from app.config.settings import Settings
    from app.config.variants import parse_config
    from app.main import create_app

    config = parse_config({"variants": {peers.MODEL: {"url": url}}})
    return create_app(Settings(), config).state.gateway


async def relay_once(gateway, tokens: int, snapshots: bool = False) -> dict:
    """One stream of `tokens` tokens from the stub through the relay, traced; the bytes allocated at marked
    points. The relay runs as `RelayResponse` runs it: on the gateway's own upstream transport, the upstream
    closed after it."""
    from app.reliability.logprobs import plan_logprobs
    from app.serving.exchange import Exchange
    from app.serving.stream import relay
    from app.serving.targets import Target
    from app.serving.upstream import send_upstream

    upstream_body = {**peers.CHAT, "stream": True, "max_tokens": tokens}
    plan = plan_logprobs(upstream_body, chat=True)
    exchange = Exchange(gateway, Target(peers.MODEL), "bench-stream", "/v1/chat/completions", True)
    # Events written so far, and the bytes allocated when the first and the last token went out. The stub may
    # be read several tokens at a time, so a mark is placed at a write and knows how many events preceded it.
    marks = {"events": 0, "first": 0, "first_events": 0, "last": 0, "last_events": 0}
    taken: list = []

    async def emit(data: bytes) -> None:  # no per-write record: the bench's own bookkeeping must not grow
        marks["events"] += data.count(b"data: ")
        if not marks["first_events"]:
            marks["first"], marks["first_events"] = tracemalloc.get_traced_memory()[0], marks["events"]
            if snapshots:
                taken.append(tracemalloc.take_snapshot())
        elif not marks["last_events"] and marks["events"] >= tokens:
            marks["last"], marks["last_events"] = tracemalloc.get_traced_memory()[0], marks["events"]
            if snapshots:
                taken.append(tracemalloc.take_snapshot())

    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    upstream = await send_upstream(
        gateway, gateway.backends[peers.MODEL], "/v1/chat/completions", upstream_body, stream=True
    )
    try:
        status = await relay(gateway, exchange, upstream, upstream_body, plan, False, emit)
    finally:
        await upstream.aclose()
    # Every token, the finish chunk and the reliability chunk (with [DONE]) went out.
    if status != 200 or marks["events"] != tokens + 3 or not marks["last_events"]:
        raise RuntimeError(f"the relay answered {status} after {marks['events']} events; expected 200, {tokens + 3}")
    flags = exchange.flags
    # The answer's own characters, as UTF-8: what any relay must hold until the end (it is logged and judged).
    answer_bytes = len(exchange.text["completion_text"].encode("utf-8", "surrogatepass"))
    del exchange, upstream, emit
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    result = {
        "tokens": tokens,
        "per_token": per_token(marks["first"], marks["last"], marks["last_events"] - marks["first_events"] + 1),
        "held_at_last_token": marks["last"] - before,
        "left_after": after - before,
        "answer_bytes": answer_bytes,
        "flags": flags,
    }
    if snapshots:
        result["lines"] = top_lines(*taken, marks["last_events"] - marks["first_events"] + 1)
    return result


def top_lines(first, last, tokens: int, count: int = 5) -> list[dict]:
    """The source lines whose allocations grew most between the first and the last token, per token."""
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diffs = last.filter_traces(keep).compare_to(first.filter_traces(keep), "lineno")
    out = []
    for diff in sorted(diffs, key=lambda d: d.size_diff, reverse=True)[:count]:
        frame = diff.traceback[0]
        where = os.path.relpath(frame.filename, REPO) if frame.filename.startswith(str(REPO)) else frame.filename
        out.append(
            {"line": f"{where}:{frame.lineno}", "per_token": diff.size_diff / (tokens - 1), "blocks": diff.count_diff}
        )
    return out


def in_process(rounds: int, lengths: tuple[int, ...] = LENGTHS) -> dict:
    from app.config.settings import Settings
    from app.serving.client import build_upstream_client
    from testkit.fast_engine import Answers, StubProtocol

    async def run() -> dict:
        # The stub in this loop (its answers built before any mark), the gateway's client as its lifespan sets it.
        answers = Answers(peers.MODEL, max(lengths))
        server = await asyncio.get_running_loop().create_server(lambda: StubProtocol(answers), "127.0.0.1", 0)
        gateway = gateway_state(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        async with server, build_upstream_client(Settings()) as client:
            gateway.client = client
            for length in lengths:  # warm-up: first-use caches (the model field, the stub's tails, a connection)
                await relay_once(gateway, length)
            streams = []
            for _ in range(rounds):
                for length in lengths:
                    streams.append(await relay_once(gateway, length))
            attribution = await relay_once(gateway, max(lengths), snapshots=True)
        return {"streams": streams, "attribution": attribution["lines"]}

    tracemalloc.start(1)
    try:
        return asyncio.run(run())
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------------- (b) the process


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, KiB (proc(5))."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def process_rounds(work: Path, rounds: int, streams: int, connections: int) -> dict:
    stub, stub_url = peers.start_stub(work, max(LENGTHS))
    try:
        direct = peers.Target("direct", stub_url + "/v1/chat/completions", {}, None, stub.pid)
        peers.wait_answering(direct, work / "stub.log", 30)
        target = peers.launch("gateway", stub_url, work, peers.VENVS, install=False)
        if target is None:
            raise RuntimeError("the gateway did not start")
        try:
            for length in LENGTHS:  # warm-up, one of each, not counted
                asyncio.run(peers.stream_load(target.url, target.headers, 1, length, 60, 1))
            start = memory_kib(target.pid)
            rows = []
            for index in range(rounds):
                for length in LENGTHS:
                    load = asyncio.run(peers.stream_load(target.url, target.headers, connections, length, 120, streams))
                    if load["streams"] < streams or load["refused"]:
                        raise RuntimeError(f"round {index + 1}: {load['streams']} of {streams} streams, {load}")
                    rows.append(
                        {"round": index + 1, "tokens": length, "streams": load["streams"], **memory_kib(target.pid)}
                    )
                    print(f"  round {index + 1}, {length}-token streams: {rows[-1]}", flush=True)
            return {"start": start, "rounds": rows, "pid_cpu_s": peers.tree_cpu_seconds(target.pid)}
        finally:
            peers.stop(target.proc)
    finally:
        peers.stop(stub)


# ---------------------------------------------------------------------------------------------- report


def render(result: dict) -> str:
    streams = result["in_process"]["streams"]
    lines = ["| stream | held per token (last vs first token) | held at the last token | left after the stream |"]
    lines.append("|---|---|---|---|")
    for stream in streams:
        lines.append(
            f"| {stream['tokens']} tokens | {stream['per_token']:.0f} B | {stream['held_at_last_token'] / 1024:.0f} KiB"
            f" | {stream['left_after']} B |"
        )
    left = sum(stream["left_after"] for stream in streams)
    tokens = sum(stream["tokens"] for stream in streams)
    lines += [
        "",
        f"Left after all {len(streams)} streams together: {left} B over {tokens:,} tokens "
        f"({left / tokens:+.3f} B per token; a leak of one byte per token would leave +{tokens:,} B).",
    ]
    lines += ["", f"The answer's own characters: {result['answer_bytes_per_token']:.2f} B per token (UTF-8)."]
    lines += ["", "Lines holding the bytes of a 2,000-token stream at its last token, per token:"]
    lines += [
        f"- `{line['line']}`: {line['per_token']:.0f} B ({line['blocks']} blocks)"
        for line in result["in_process"]["attribution"]
    ]
    process = result["process"]
    lines += ["", "| round | tokens per stream | streams | VmRSS | VmHWM |", "|---|---|---|---|---|"]
    lines.append(f"| warm | - | - | {process['start']['VmRSS']} KiB | {process['start']['VmHWM']} KiB |")
    lines += [
        f"| {row['round']} | {row['tokens']} | {row['streams']} | {row['VmRSS']} KiB | {row['VmHWM']} KiB |"
        for row in process["rounds"]
    ]
    lines += ["", f"Verdict: {result['verdict']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="alternations of 500- and 2,000-token streams")
    parser.add_argument("--streams", type=int, default=8, help="streams per round through the gateway process")
    parser.add_argument("--connections", type=int, default=4, help="concurrent streams through the gateway process")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("this bench pins the gateway and the load to two different CPUs: it needs two")
    os.sched_setaffinity(0, {peers.LOAD_CPU})  # this script and the stub on CPU 1, the gateway on CPU 0
    before = peers.machine()
    print("(a) the relay in this process, under tracemalloc ...", flush=True)
    result: dict = {"machine_before": before, "in_process": in_process(args.rounds)}
    print("(b) the gateway process ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="stream-growth-") as tmp:
        result["process"] = process_rounds(Path(tmp), args.rounds, args.streams, args.connections)
    result["machine_after"] = peers.machine()
    by_length: dict[int, list[float]] = {}
    for stream in result["in_process"]["streams"]:
        by_length.setdefault(stream["tokens"], []).append(stream["per_token"])
    result["answer_bytes_per_token"] = answer_bytes_per_token(result["in_process"]["streams"])
    result["late_rss_growth_kib"] = late_growth(result["process"]["rounds"])
    result["verdict"] = growth_verdict(by_length, result["late_rss_growth_kib"], result["answer_bytes_per_token"])
    print()
    print(render(result))
    after = result["machine_after"]
    print(
        f"\n{before['cpu']}, {before['cpus']} CPUs, {before['date']}; load average (1/5/15 min) before "
        f"{'/'.join(f'{x:.2f}' for x in before['load'])}, after {'/'.join(f'{x:.2f}' for x in after['load'])}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
