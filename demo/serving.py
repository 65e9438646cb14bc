"""Serve the base and two pruned variants behind the gateway, with an A/B/C experiment that decides.

Writes a variants.yaml in the documented minimal shape (docs/contracts.md,
issue 4), prints how to talk to it, and runs the gateway until Ctrl-C. A
background thread waits for `/ready` and says when every engine is up.

The experiment `demo-ab` compares each pruned arm with the base (its control)
under an explicit decision rule (`DECISION_RULE`, docs/gateway.md
"Experiment statistics"), so feedback turns into verdicts:
`python -m demo.traffic` sends scripted questions, rates the answers and
prints them.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import httpx
import yaml

from demo.engine import DTYPE, KV_CACHE_BYTES, MAX_MODEL_LEN
from demo.variants import Variant

EXPERIMENT = "demo-ab"
CONTROL = "base"
# A pruned arm is non-inferior when its answers are rated good at most 5 points less often than the base's,
# and it says "I don't know" at most 5 points more often: a variant must not look reliable by refusing
# (issue 22). alpha: the chance of any wrong verdict over the whole experiment, however often it is read.
DECISION_RULE = {"outcome": {"margin": 0.05}, "flags": {"refusal": {"margin": 0.05}}, "alpha": 0.05}


# Served beside the base, chosen before any evaluation so the gateway can start as soon as these two
# (and the base) are evaluated: the method the multi-seed results recommend, at the two mildest ratios
# (bench/demo_results.md: at 0.25 it keeps all of the biomedical base on every seed, at 0.5 it is within
# 0.03 of frequency, the best, and hallucinates less than frequency on every seed; REAP hallucinates
# less on two seeds of three but keeps only 0.73-0.96 of the biomedical base).
DEFAULT_SERVED = ("gate-25", "gate-50")


def choose_served(requested, variants: dict[str, Variant]) -> list[str]:
    """The two pruned variants to serve: those requested that the sweep has, then the sweep's
    data-driven variants from the mildest ratio up (random last)."""
    chosen = [name for name in requested if name in variants and name != "base"]
    pruned = sorted(
        (v for v in variants.values() if v.method is not None and v.name not in chosen),
        key=lambda v: (v.method == "random", v.ratio, v.name),
    )
    return (chosen + [v.name for v in pruned])[:2]


def write_variants_yaml(path: Path, variants: dict[str, Variant], served: list[str], cards: dict[str, Path]) -> Path:
    engine = {"kv_cache_bytes": KV_CACHE_BYTES, "max_model_len": MAX_MODEL_LEN, "dtype": DTYPE}
    config: dict = {"variants": {}, "experiments": {}}
    for name in ["base", *served]:
        entry = {"model": str(variants[name].model_dir), "engine": dict(engine)}
        if name != "base":
            entry["base"] = "base"  # the base cross-check is on by default with a base
        if name in cards:
            entry["report_card"] = str(cards[name])
            if name != "base":
                # Certified cascade: an answer above its certificate's risk (or from an uncertified
                # domain) is re-asked of the base, whose own certificate then travels with it.
                entry["cascade"] = True
        config["variants"][name] = entry
    share = round(100 / (len(served) + 1))
    config["experiments"][EXPERIMENT] = {
        "arms": {name: share for name in [CONTROL, *served]},
        "control": CONTROL,
        "decide": copy.deepcopy(DECISION_RULE),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def usage_text(url: str, question: str, report: Path, served: list[str]) -> str:
    body = f'{{"model": "{EXPERIMENT}", "messages": [{{"role": "user", "content": "{question}"}}], "max_tokens": 12}}'
    return f"""
Gateway: {url}   (variants: base, {", ".join(served)}; experiment {EXPERIMENT!r} splits traffic between them)
  curl:   curl -s {url}/v1/chat/completions -H 'content-type: application/json' -d '{body}'
  openai: python -c "from openai import OpenAI; c = OpenAI(base_url='{url}/v1', api_key='none'); \\
print(c.chat.completions.create(model='{EXPERIMENT}', messages=[{{'role': 'user', 'content': '{question}'}}], \\
max_tokens=12).choices[0].message.content)"
  metrics: {url}/metrics     experiment stats: {url}/v1/experiments/{EXPERIMENT}
  verdict: .venv/bin/python -m demo.traffic --url {url}   (scripted questions + feedback; prints each arm's
           verdict against {CONTROL}: non_inferior, inferior or inconclusive)
  report:  {report}
Engines are starting (about 30 s each); Ctrl-C stops the gateway and every engine.
"""


def announce_when_ready(url: str, timeout: float = 600) -> threading.Thread:
    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    print(f"demo: all variants ready at {url}", flush=True)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        print(f"demo: variants not ready after {timeout:.0f}s; see {url}/ready", flush=True)

    thread = threading.Thread(target=wait, daemon=True, name="demo-ready")
    thread.start()
    return thread


def serve_variants(config_path: Path, host: str, port: int) -> None:
    from app.commands.serve import serve

    announce_when_ready(f"http://{host}:{port}")
    serve(config_path, host, port)
