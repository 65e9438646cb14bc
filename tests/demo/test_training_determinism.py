"""Demo training gives bit-identical weights whatever the caller's threads and CPU features (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.model_config import DemoModelConfig
from demo.numerics import PINNED_ENV, weights_sha256
from demo.train_child import train_in_child

ROOT = Path(__file__).resolve().parents[2]

# What differs between two machines of one kind, as an environment can emulate it: the thread count
# torch would pick (the cores), the ISA MKL and oneDNN dispatch to, and the ATen kernels.
MACHINES = {
    "one core": {"OMP_NUM_THREADS": "1"},
    "two cores, no AVX-512": {
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx512",
    },
}


@pytest.mark.slow
def test_reduced_recipe_trains_the_same_weights_on_emulated_machines(tmp_path):
    cfg = DemoModelConfig(max_steps=8)
    hashes = {}
    for name, machine in MACHINES.items():
        out = tmp_path / name.replace(" ", "-").replace(",", "")
        summary = train_in_child(cfg, out, progress=False, env={**os.environ, **machine})
        assert summary["steps"] == 8
        hashes[name] = weights_sha256(out)
    assert len(set(hashes.values())) == 1, hashes


def test_training_child_refuses_unpinned_numerics(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "demo.train_child", "{}", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "not pinned" in result.stderr


def test_cache_key_follows_the_numerics_not_the_thread_count(monkeypatch):
    import torch

    from demo import build
    from demo.corpus import build_corpus

    corpus, cfg = build_corpus(0), DemoModelConfig(epochs=1)
    key = build.model_key(corpus, cfg)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        assert build.model_key(corpus, cfg) == key  # training pins its own threads
    finally:
        torch.set_num_threads(threads)
    real = build.DemoModelConfig.cache_dict

    def other_torch(self):
        values = real(self)
        values["numerics"] = {**values["numerics"], "torch": "9.9"}
        return values

    monkeypatch.setattr(build.DemoModelConfig, "cache_dict", other_torch)
    assert build.model_key(corpus, cfg) != key  # new kernels are a new model


def _rank_processes(out_dir: Path):
    import psutil

    found = {}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "demo.train_child" in cmdline and str(out_dir) in cmdline:
            found[int(cmdline[cmdline.index(str(out_dir)) + 1])] = process
    return found


@pytest.mark.slow
def test_a_dead_rank_stops_training_at_once_and_leaves_no_rank_running(tmp_path):
    """Rank 1 killed mid-training: training fails within seconds, says which rank died, leaves no rank
    running and no summary (so build_model removes the half-built directory)."""
    import threading
    import time

    out = tmp_path / "model"
    outcome = {}

    def train():
        try:
            train_in_child(DemoModelConfig(max_steps=5000), out, progress=False)
        except Exception as exc:  # noqa: BLE001  (the test inspects it)
            outcome["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 120
    ranks = {}
    while len(ranks) < 2 and time.monotonic() < deadline:
        ranks = _rank_processes(out)
        time.sleep(0.2)
    assert len(ranks) == 2, "both training ranks should start"
    time.sleep(8)  # into the training loop (tokenizer, rendezvous and model are ready well before)
    killed = time.monotonic()
    ranks[1].kill()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the parent should notice the dead rank, not wait for the survivor"
    assert time.monotonic() - killed < 40
    assert "rank 1" in str(outcome.get("error")), outcome
    assert not ranks[0].is_running() or ranks[0].status() == "zombie"
    assert not (out / "train_summary.json").exists()
