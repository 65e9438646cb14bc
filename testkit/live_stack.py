"""A live monitoring stack on loopback: the real gateway with two tiny vLLM CPU variants
(base and a 50%-pruned copy), and Debian's Prometheus scraping the gateway and both
engines with the shipped rule files. Used by the end-to-end test and by
deploy/grafana/render_snapshot.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from testkit.promql import DEPLOY, ROOT
from testkit.vllm_server import free_port

# Half of the tiny model's 8 experts in each of its 2 MoE layers (the study's mask format).
MASK = [[0, 2, 5, 7], [1, 2, 3, 6]]
# The pruned variant's report card: thresholds every answer of a random tiny model
# crosses (so flags are certain), and baselines the alert rule compares against.
REPORT_CARD = {
    "schema_version": 1,
    "variant": "pruned-50",
    "model": "pruned-50",
    "base": "base",
    "tasks": {},
    "flags": {
        "low_confidence": {"signal": "mean_logprob", "direction": "below", "threshold": 0.0, "base_rate": 0.2},
        "high_entropy": {"signal": "mean_entropy", "direction": "above", "threshold": 0.0, "base_rate": 0.3},
    },
    # A reliability section, so the live re-certification gauges exist from the start (uncertified:
    # this random model has no labelled answers; the gateway flags every answer of it).
    "reliability": {
        "alpha": 0.05,
        "delta": 0.05,
        "weights_sha256": None,
        "labels_sha256": "0" * 64,
        "base_check": False,
        "domains": {
            "all": {
                "n": 0,
                "n_wrong": 0,
                "certificate": {
                    "alpha": 0.05,
                    "delta": 0.05,
                    "status": "uncertified",
                    "threshold": None,
                    "coverage": None,
                    "n_unflagged": 0,
                    "errors_unflagged": 0,
                    "realised_error": None,
                    "error_upper": None,
                    "n_calibration": 0,
                    "n_fit": 0,
                    "tested": 0,
                    "reason": "no labelled answers",
                },
            }
        },
    },
}
ENGINE = {"kv_cache_bytes": 134217728, "max_model_len": 512}


@dataclass
class LiveStack:
    gateway_url: str
    prometheus_url: str
    engine_urls: dict[str, str]
    models: dict[str, Path]
    work: Path
    statuses: list[int] = field(default_factory=list)  # of the traffic sent so far

    def query(self, expr: str, at: float | None = None) -> dict:
        """Prometheus' /api/v1/query answer (status, data or error)."""
        params = {"query": expr, **({"time": at} if at else {})}
        return httpx.get(f"{self.prometheus_url}/api/v1/query", params=params, timeout=30).json()

    def query_alerts(self) -> list[dict]:
        """Active (pending or firing) alerts."""
        return httpx.get(f"{self.prometheus_url}/api/v1/alerts", timeout=30).json()["data"]["alerts"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict:
        params = {"query": expr, "start": start, "end": end, "step": step}
        return httpx.get(f"{self.prometheus_url}/api/v1/query_range", params=params, timeout=30).json()


def build_models(work: Path, base: Path | None = None) -> dict[str, Path]:
    """The tiny base model (built here unless given) and a pruned copy made by `moeprune prune --mask`."""
    if base is None:
        from testkit.tiny_models import build_tiny_model

        base = build_tiny_model("qwen3_moe", work / "base")
    mask = work / "expert_mask.json"
    mask.write_text(json.dumps(MASK))
    pruned = work / "pruned-50"
    subprocess.run(
        [sys.executable, "-m", "moeprune.cli", "prune", str(base), "--out", str(pruned), "--mask", str(mask)],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=ROOT,
    )
    # A domain gate for the guard panels (threshold 0 in the variants file: it scores, and passes everything).
    in_domain = work / "in_domain.jsonl"
    in_domain.write_text('{"text": "Which organ does hepatitis affect?"}\n{"text": "What does aspirin inhibit?"}\n')
    subprocess.run(
        [sys.executable, "-m", "moeprune.cli", "guard", "build", str(pruned), "--in-domain", str(in_domain)],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=ROOT,
    )
    return {"base": base, "pruned-50": pruned}


def second_core_binding() -> dict[str, str]:
    """Engine env pinning the pruned engine's worker to another core: vLLM CPU workers
    bind to core 0 by default, and two engines there load and serve one after the other."""
    cores = sorted(os.sched_getaffinity(0))
    return {"VLLM_CPU_OMP_THREADS_BIND": str(cores[1])} if len(cores) > 1 else {}


def write_variants(work: Path, models: dict[str, Path], ports: dict[str, int]) -> Path:
    card = work / "report_card.json"
    card.write_text(json.dumps(REPORT_CARD))
    config = {
        "variants": {
            # Routing telemetry on (vLLM CPU cannot return routed experts: the drift gauge is NaN, present).
            "base": {
                "model": str(models["base"]),
                "engine": {**ENGINE, "port": ports["base"]},
                "telemetry": {"routed_experts": True},
            },
            "pruned-50": {
                "model": str(models["pruned-50"]),
                "base": "base",
                "report_card": str(card),
                "engine": {**ENGINE, "port": ports["pruned-50"], "env": second_core_binding()},
                "guard": {"domain_gate": {"fallback": "base", "threshold": 0.0}},
            },
        },
        # control + decide: the verdict gauges exist; the experiment's answers get feedback (traffic.py).
        "experiments": {
            "ab": {
                "arms": {"base": 50, "pruned-50": 50},
                "sticky": "x-session-id",
                "control": "base",
                "decide": {"outcome": {"margin": 0.1}},
            }
        },
    }
    path = work / "variants.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def prometheus_config(gateway_port: int, engine_ports: dict[str, int], interval: str = "1s") -> dict:
    """The shipped prometheus.yml with loopback targets, the rule files by absolute path, a fast interval."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(path) for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["moeprune-gateway"]["static_configs"] = [{"targets": [f"127.0.0.1:{gateway_port}"]}]
    jobs["vllm"]["static_configs"] = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"variant": name}} for name, port in engine_ports.items()
    ]
    config["scrape_configs"] = [jobs["moeprune-gateway"], jobs["vllm"]]  # no DCGM without a GPU
    return config


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)


def wait_until_ok(url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=3).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not OK after {timeout}s:\n{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM (the gateway stops its engines itself), then SIGKILL the whole process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def live_stack(work: Path, base_model: Path | None = None, ready_timeout: float = 300) -> Iterator[LiveStack]:
    work.mkdir(parents=True, exist_ok=True)
    models = build_models(work, base_model)
    ports = {name: free_port() for name in models}
    gateway_port, prometheus_port = free_port(), free_port()
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(gateway_port, ports)))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOEPRUNE_")}
    env["MOEPRUNE_WORK_DIR"] = str(work / "engines")
    env["MOEPRUNE_EXPERIMENT_EVALUATE_INTERVAL_S"] = "1"  # verdict and outcome gauges within a scrape or two
    config = write_variants(work, models, ports)
    gateway = spawn(
        [
            sys.executable,
            "-m",
            "moeprune.cli",
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(gateway_port),
        ],
        work / "gateway.log",
        env,
    )
    prometheus = spawn(
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        work / "prometheus.log",
    )
    try:
        stack = LiveStack(
            f"http://127.0.0.1:{gateway_port}",
            f"http://127.0.0.1:{prometheus_port}",
            {name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
            models,
            work,
        )
        wait_until_ok(stack.prometheus_url + "/-/ready", prometheus, work / "prometheus.log", 60)
        wait_until_ok(stack.gateway_url + "/ready", gateway, work / "gateway.log", ready_timeout)
        yield stack
    finally:
        stop(gateway, grace=60)
        stop(prometheus, grace=15)
