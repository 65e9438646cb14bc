"""Experiment state survives a restart of the gateway process (a real SQLite file), and SIGHUP reloads the
experiments of variants.yaml without one: weights change, counts stay."""

from __future__ import annotations

import signal
import time

import httpx

from tests.app.experiment_gateway import write_variants
from tests.app.gateway_process import start_gateway
from tests.support.fake_engine import FakeEngine
from tests.support.loopback import serve_app

EXPERIMENT = {"arms": {"base": 50, "pruned": 50}, "control": "base", "decide": {"outcome": {"margin": 0.1}}}


def run_gateway(tmp_path, name: str):
    running = start_gateway(
        tmp_path / "variants.yaml",
        tmp_path / name,
        env={
            "MOEPRUNE_STATE_DIR": str(tmp_path / "state"),
            "MOEPRUNE_HEALTH_INTERVAL_S": "0.2",
            "MOEPRUNE_EXPERIMENT_FLUSH_INTERVAL_S": "0.2",
        },
    )
    running.wait_ready(timeout=60)
    return running


def comparable(report: dict) -> dict:
    return {
        arm: {key: stats[key] for key in ("requests", "errors", "flags", "latency_ms", "outcome")}
        for arm, stats in report["arms"].items()
    }


def test_counts_and_completion_ids_survive_a_restart_and_sighup_reloads(tmp_path):
    with serve_app(FakeEngine()) as base_url, serve_app(FakeEngine()) as pruned_url:
        urls = {"base": base_url, "pruned": pruned_url}
        write_variants(tmp_path / "variants.yaml", urls, EXPERIMENT)
        (tmp_path / "first").mkdir()
        (tmp_path / "second").mkdir()
        first = run_gateway(tmp_path, "first")
        try:
            ids = []
            for index in range(20):
                body = {"model": "ab", "prompt": "hi", "max_tokens": 2}
                response = httpx.post(
                    first.url + "/v1/completions",
                    json=body,
                    headers={**first.headers, "x-session-id": f"u{index}"},
                    timeout=30,
                )
                assert response.status_code == 200, response.text
                ids.append(response.json()["id"])
            feedback = httpx.post(
                first.url + "/v1/feedback", headers=first.headers, json={"id": ids[0], "label": "good"}, timeout=30
            )
            assert feedback.status_code == 200, feedback.text
            before = httpx.get(first.url + "/v1/experiments/ab", headers=first.headers, timeout=30).json()
        finally:
            assert first.shutdown() in (0, -signal.SIGTERM)  # a graceful stop (uvicorn re-raises SIGTERM)
        assert sum(arm["requests"] for arm in before["arms"].values()) == 20
        second = run_gateway(tmp_path, "second")
        try:
            after = httpx.get(second.url + "/v1/experiments/ab", headers=second.headers, timeout=30).json()
            assert comparable(after) == comparable(before)
            # The id map was persisted too: feedback on an answer from before the restart still lands.
            late = httpx.post(
                second.url + "/v1/feedback", headers=second.headers, json={"id": ids[1], "score": 0.5}, timeout=30
            )
            assert late.status_code == 200 and late.json()["recorded"] is True
            repeat = httpx.post(
                second.url + "/v1/feedback", headers=second.headers, json={"id": ids[0], "label": "bad"}, timeout=30
            )
            assert repeat.json()["duplicate"] is True  # idempotent across the restart

            write_variants(tmp_path / "variants.yaml", urls, {**EXPERIMENT, "arms": {"base": 100, "pruned": 0}})
            second.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                report = httpx.get(second.url + "/v1/experiments/ab", headers=second.headers, timeout=30).json()
                if report["arms"]["pruned"]["weight"] == 0:
                    break
                time.sleep(0.2)
            assert report["arms"]["pruned"]["weight"] == 0, second.log_tail()
            assert sum(arm["requests"] for arm in report["arms"].values()) == 20  # state kept
            assert second.proc.poll() is None  # SIGHUP reloaded, it did not stop the gateway
            assert '"configuration reloaded"' in second.log_tail(20000)
        finally:
            assert second.shutdown() in (0, -signal.SIGTERM)
