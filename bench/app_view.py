"""What an app receives: plain questions through the running demo gateway, the answers it serves unflagged.

    .venv/bin/python bench/app_view.py [--config demo-out/variants.yaml] [--md bench/app_view.md] [--json FILE]

The issue that asked for certified flags measured this first (issue 26, "Why"): sent as plain questions
through the demo's gateway, 73% of the general answers gate-50 served without a risk flag were wrong
(23% of its biomedical ones). This re-measures it the way an app sees it: `moeprune serve` on the demo's
variants file (real vLLM CPU engines, the certificates and the cascade as the demo configures them), the
real `openai` client, and each free-text question of the shipped open sets (`bio_open`, `general_open`)
asked of each variant by name. Only the questions in the certifying half of the cards' split are asked:
the other half chose `p_wrong` and the thresholds, so measuring on it would flatter them.

Per variant and item domain: how many answers came back, how many declined (`reliability.abstained`), how
many the cascade re-asked of the base, how many carry a risk flag (`above_risk`, `uncertified`, or a
cascade that could not run), and among the answers served *without* one the share that is wrong
(reference match, evaluators/answers.py), with its exact (Clopper-Pearson) 95% interval.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402
from evaluators.answers import score_generation  # noqa: E402
from evaluators.reliability_card import in_fit_half  # noqa: E402
from evaluators.tasks import open_question_tasks, shipped_tasks  # noqa: E402
from moeprune.reliability.binomial import upper_bound  # noqa: E402
from testkit.vllm_server import free_port, stop_process_group  # noqa: E402

OPEN_TASKS = {name: task.domain for name, task in open_question_tasks().items()}
RISK_FLAGS = ("above_risk", "uncertified", "fallback_unavailable")
VARIANTS = ("base", "gate-25", "gate-50")


def lower_bound(k: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson lower bound: 1 - the upper bound of the complement."""
    return 0.0 if k == 0 else 1.0 - upper_bound(n - k, n, delta)


def questions(split_seed: int) -> list[tuple[str, object]]:
    """(task name, item) of the open sets' certifying half."""
    tasks = shipped_tasks()
    out = []
    for name in OPEN_TASKS:
        for item in tasks[name].load():
            if not in_fit_half({"task": name, "id": item.id}, split_seed):
                out.append((name, item))
    return out


def start_gateway(config: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moeprune.cli", "serve", "--config", str(config), "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url + "/ready", timeout=3).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(2)
    stop_process_group(proc, grace=60)
    raise SystemExit(f"the gateway was not ready after 900 s; see {log}")


def ask(client, variant: str, task_name: str, item, task) -> dict:
    raw = client.chat.completions.with_raw_response.create(
        model=variant,
        messages=[{"role": "user", "content": item.fields["question"]}],
        max_tokens=16,
        temperature=0,
    )
    data = json.loads(raw.http_response.text)
    text = data["choices"][0]["message"]["content"] or ""
    reliability = data.get("reliability") or {}
    flags = reliability.get("flags") or []
    return {
        "variant": variant,
        "task": task_name,
        "id": item.id,
        "domain": OPEN_TASKS[task_name],
        "reply": text,
        "label": score_generation(task, item, text).label,
        "abstained": bool(reliability.get("abstained")),
        "escalated": "escalated" in reliability,
        "risk_flag": any(flag in flags for flag in RISK_FLAGS),
        "p_wrong": reliability.get("p_wrong"),
    }


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for variant in VARIANTS:
        for domain in ("biomedical", "general"):
            cell = [r for r in rows if r["variant"] == variant and r["domain"] == domain]
            if not cell:
                continue
            asserted = [r for r in cell if not r["abstained"]]
            unflagged = [r for r in asserted if not r["risk_flag"]]
            wrong = sum(r["label"] in ("wrong", "unparsed") for r in unflagged)
            out.append(
                {
                    "variant": variant,
                    "domain": domain,
                    "asked": len(cell),
                    "abstained": len(cell) - len(asserted),
                    "escalated": sum(r["escalated"] for r in cell),
                    "flagged": len(asserted) - len(unflagged),
                    "unflagged": len(unflagged),
                    "wrong_unflagged": wrong,
                    "ci95": [lower_bound(wrong, len(unflagged), 0.025), upper_bound(wrong, len(unflagged), 0.025)]
                    if unflagged
                    else None,
                    "wrong_all": sum(r["label"] in ("wrong", "unparsed") for r in asserted),
                }
            )
    return out


def markdown(cells: list[dict], started: str, seconds: float, command: str) -> str:
    lines = [
        f"## {started}, {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end\n",
        f"Re-run: `{command}` ({seconds:.0f} s including engine start-up)\n",
        "| variant | item domain | asked | declined | re-asked of the base | served with a risk flag "
        "| served without one | wrong among those (exact 95% CI) | wrong among all non-declined answers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        asserted = c["asked"] - c["abstained"]
        share = (
            f"{c['wrong_unflagged']}/{c['unflagged']} = {c['wrong_unflagged'] / c['unflagged']:.1%} "
            f"({c['ci95'][0]:.1%}-{c['ci95'][1]:.1%})"
            if c["unflagged"]
            else "none served unflagged"
        )
        lines.append(
            f"| {c['variant']} | {c['domain']} | {c['asked']} | {c['abstained']} | {c['escalated']} "
            f"| {c['flagged']} | {c['unflagged']} | {share} | {c['wrong_all']}/{asserted} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "demo-out" / "variants.yaml")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not args.config.is_file():
        raise SystemExit(f"{args.config} does not exist: run `moeprune demo --no-serve` first (README)")
    import openai

    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.monotonic()
    tasks = shipped_tasks()
    asked = questions(args.split_seed)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "app_view_gateway.log"
    proc, url = start_gateway(args.config, log)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key=os.environ.get("MOEPRUNE_BENCH_KEY", "none"))
        with ThreadPoolExecutor(max_workers=8) as pool:
            rows = list(
                pool.map(
                    lambda job: ask(client, job[0], job[1], job[2], tasks[job[1]]),
                    [(variant, name, item) for variant in VARIANTS for name, item in asked],
                )
            )
    finally:
        stop_process_group(proc, grace=60)
    cells = summarise(rows)
    command = ".venv/bin/python " + " ".join(["bench/app_view.py", *sys.argv[1:]])
    text = markdown(cells, started, time.monotonic() - t0, command)
    print(text)
    if args.md:
        head = args.md.read_text().split("\n## ")[0] if args.md.exists() else "# What an app receives\n"
        args.md.write_text(head.rstrip() + "\n\n" + text)
    if args.json:
        args.json.write_text(json.dumps({"cells": cells, "answers": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
