"""Time a newcomer's first run: fresh clone, fresh home (cold caches), the README's main command.

    python3 bench/first_run.py [--repo .] [--keep DIR] [--json OUT]

Clones the repository's committed HEAD into a temporary directory, gives the
run an empty HOME (so pip's, vLLM's and the demo's caches all start empty;
the machine's own pip configuration and wheel directory stay, as on any fresh
machine of this kind), runs `bash scripts/setup.sh && .venv/bin/moeprune demo`
exactly as the README says, timestamps every line the demo prints, and, once
the gateway says its variants are ready, sends one chat completion through
the real `openai` client to the demo's experiment, then runs the README's
A/B step (`python -m demo.traffic`: scripted questions and feedback, each
arm's verdict). It then stops the demo with SIGINT (Ctrl-C) and prints the
per-step timing as a Markdown table and the verdicts.

"Served" is when the gateway's `/ready` answered 200 for all three variants
and the request succeeded; the report is written before the gateway starts.
Steps come from the demo's own lines (`demo: model ... trained in`, `pruned
variants ready`, `evaluated`, `report`, `all variants ready`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STEPS = [  # (label, pattern of the demo line that ends the step)
    ("install (scripts/setup.sh)", re.compile(r"^==> \.venv ready")),
    # the shipped model (verified, copied into the cache), or with --retrain a model trained here
    ("get the demo model", re.compile(r"^demo: model \S+ (trained in|shipped with the repository)")),
    ("prune the sweep", re.compile(r"^demo: \d+ pruned variants ready")),
    ("evaluate base + served variants on vLLM", re.compile(r"^demo: evaluated ")),
    ("write the report", re.compile(r"^demo: report ")),
    ("gateway: three variants ready", re.compile(r"^demo: all variants ready at ")),
]


def run_first(repo: Path, work: Path, port: int, timeout: float) -> dict:
    clone, home = work / "clone", work / "home"
    home.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "MOEPRUNE_", "XDG_CACHE"))}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    command = f"bash scripts/setup.sh && .venv/bin/moeprune demo --port {port}"
    started = time.monotonic()
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    marks: dict[str, float] = {}
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(f"{time.monotonic() - started:7.1f}  {line}")
            for label, pattern in STEPS:
                if label not in marks and pattern.search(line):
                    marks[label] = time.monotonic() - started
            if "gateway: three variants ready" in marks:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    served_at, answer, error, verdict = None, None, None, None
    try:
        if ready.wait(timeout):
            try:
                answer = ask(clone, port)
                served_at = time.monotonic() - started
                verdict = scripted_verdict(clone, port)
            except Exception as exc:  # noqa: BLE001  (reported, not raised: the timing is still worth printing)
                error = repr(exc)
        else:
            error = f"not served within {timeout:.0f} s"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(timeout=5)
    return {
        "marks": marks,
        "served_s": served_at,
        "answer": answer,
        "verdict": verdict,
        "error": error,
        "exit": process.returncode,
        "log": lines,
    }


def ask(clone: Path, port: int) -> str:
    """One chat completion to the demo's experiment through the real openai client (the clone's venv)."""
    code = (
        "from openai import OpenAI\n"
        f"c = OpenAI(base_url='http://127.0.0.1:{port}/v1', api_key='none')\n"
        "r = c.chat.completions.create(model='demo-ab', max_tokens=12,\n"
        "    messages=[{'role': 'user', 'content': 'Which class does the drug belong to? Answer briefly.'}])\n"
        "print(r.model, '|', r.choices[0].message.content)\n"
    )
    done = subprocess.run(
        [str(clone / ".venv/bin/python"), "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def scripted_verdict(clone: Path, port: int) -> str:
    """The README's A/B step: scripted questions and feedback to demo-ab, then each arm's verdict."""
    done = subprocess.run(
        [str(clone / ".venv/bin/python"), "-m", "demo.traffic", "--url", f"http://127.0.0.1:{port}"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return done.stdout.strip()


def same_model_as_shipped(result: dict, repo: Path) -> str:
    """Whether the newcomer served the model the repository ships (demo/model/shipped.json)."""
    served = next(
        (m.group(1) for line in result["log"] for m in [re.search(r"weights sha256 ([0-9a-f]+)", line)] if m), None
    )
    record = repo / "demo" / "model" / "shipped.json"
    shipped = json.loads(record.read_text())["weights_sha256"] if record.exists() else None
    if served is None or shipped is None:
        return "unknown (no weights sha256 printed, or no shipped model)"
    return f"{'yes' if shipped.startswith(served) else 'NO'} (served {served}, demo/model/shipped.json {shipped})"


def table(result: dict) -> str:
    rows, previous = ["| step | ends at (s) | takes (s) |", "|---|---|---|"], 0.0
    for label, _ in STEPS:
        at = result["marks"].get(label)
        if at is None:
            rows.append(f"| {label} | - | - |")
            continue
        rows.append(f"| {label} | {at:.0f} | {at - previous:.0f} |")
        previous = at
    if result["served_s"] is not None:
        rows.append(
            f"| first answer through the gateway (openai client) | {result['served_s']:.0f} | "
            f"{result['served_s'] - previous:.0f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--timeout", type=float, default=2400, help="give up if not served by then (s)")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result (with the log) here")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=False)
        result = run_first(args.repo.resolve(), args.keep, args.port, args.timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="moeprune-first-run-") as work:
            result = run_first(args.repo.resolve(), Path(work), args.port, args.timeout)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    print("\n".join(result["log"][-40:]))
    print()
    print(table(result))
    print(f"\nanswer: {result['answer']}  error: {result['error']}  demo exit status: {result['exit']}")
    print(f"demo-ab after `python -m demo.traffic`:\n{result['verdict']}")
    print(f"served the shipped model: {same_model_as_shipped(result, args.repo)}")
    return 0 if result["served_s"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
