"""Scripted traffic and feedback for the demo's experiment, so that its verdict appears.

    .venv/bin/python -m demo.traffic [--url http://127.0.0.1:8080] [--requests 300] [--api-key KEY]

Plays a client app and its users against a running `moeprune demo`: it asks
`demo-ab` the shipped sets' answerable questions of both domains (the
contract's multiple-choice prompt), each as a different user so the sticky
split spreads them over the arms, rates every answer good when it is the
item's gold option and bad otherwise (what the app's users would say), posts
that to `/v1/feedback`, and prints `/v1/experiments/demo-ab`: per arm the
share rated good, the refusal rate, and the verdict against the control
under the rule `demo/serving.py` writes (`DECISION_RULE`).

With the default 300 questions (about 100 per arm) an arm rated good half as
often as the base, as `gate-50` is on these mixed questions, is `inferior` by
the rule's arithmetic (60-100 ratings per arm suffice); an arm within a few
points of the base needs thousands more before a verdict, and says how many
(`needed_n_estimate`). The verdicts hold at
any moment you read them (a confidence sequence), so re-running adds
evidence rather than fishing for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from demo.serving import EXPERIMENT

SETS = ("biomedical_qa.jsonl", "general_qa.jsonl")


def load_items(sets_dir: Path | None = None) -> list[dict]:
    """The answerable items of both domains, interleaved so any prefix asks both."""
    import evaluators

    folder = Path(sets_dir) if sets_dir else Path(evaluators.__file__).resolve().parent / "sets"
    per_set = [[json.loads(line) for line in (folder / name).read_text().splitlines() if line.strip()] for name in SETS]
    return [item for group in zip(*per_set) for item in group]


def ask_and_rate(client: httpx.Client, item: dict, user: str) -> dict:
    """One question as one user; the answer rated against the gold option and the rating posted."""
    from evaluators.prompts import parse_answer, render_mc_prompt

    response = client.post(
        "/v1/chat/completions",
        json={
            "model": EXPERIMENT,
            "max_tokens": 12,
            "temperature": 0,
            "user": user,
            "messages": [{"role": "user", "content": render_mc_prompt(item["question"], item["options"])}],
        },
    )
    response.raise_for_status()
    answer = response.json()
    text = answer["choices"][0]["message"]["content"] or ""
    good = parse_answer(text, item["options"]).choice == item["answer"]
    rated = client.post("/v1/feedback", json={"id": answer["id"], "label": "good" if good else "bad"})
    rated.raise_for_status()
    return {"arm": answer["model"], "good": good}


def run_traffic(
    url: str,
    requests: int = 300,
    api_key: str | None = None,
    workers: int = 8,
    items: list[dict] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> dict:
    """Send `requests` rated questions to the experiment; returns its statistics afterwards."""
    items = items or load_items()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=60, transport=transport) as client:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda i: ask_and_rate(client, items[i % len(items)], f"demo-user-{i}"), range(requests)))
        report = client.get(f"/v1/experiments/{EXPERIMENT}")
        report.raise_for_status()
        return report.json()


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def verdict_lines(report: dict) -> list[str]:
    """Per arm: how often its answers were rated good, how often it refused, and its verdict."""
    lines = [f"experiment {report['name']}: control {report.get('control')}, alpha {report.get('alpha')}"]
    for arm, stats in report["arms"].items():
        outcome = stats.get("outcome") or {}
        refusal = (stats.get("flags") or {}).get("refusal") or {}
        line = (
            f"  {arm:10s} answers {stats.get('requests', 0):4d}, rated good {_percent(outcome.get('mean'))}, "
            f"refused {_percent(refusal.get('rate'))}"
        )
        decision = stats.get("decision")
        if decision is None:
            lines.append(line + "  (the control)")
            continue
        line += f"  -> {decision['status'].upper()} (decided by {decision['metric']}"
        if decision.get("interval"):
            low, high = decision["interval"]
            line += (
                f": {decision['estimate']:+.3f} vs control, interval [{low:+.3f}, {high:+.3f}], "
                f"margin {decision['margin']}"
            )
        if decision["status"] == "inconclusive" and decision.get("needed_n_estimate"):
            line += f"; about {decision['needed_n_estimate']} ratings over the two arms would settle it"
        if decision.get("reason"):
            line += f"; {decision['reason']}"
        lines.append(line + ")")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the demo's gateway")
    parser.add_argument("--requests", type=int, default=300, help="rated questions to send (default 300)")
    parser.add_argument("--api-key", default=None, help="a gateway key, where it requires one")
    args = parser.parse_args(argv)
    try:
        report = run_traffic(args.url, args.requests, args.api_key)
    except httpx.HTTPError as exc:
        print(
            f"demo traffic: {exc}; is `moeprune demo` serving at {args.url} (wait for 'all variants ready')?",
            file=sys.stderr,
        )
        return 1
    print("\n".join(verdict_lines(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
