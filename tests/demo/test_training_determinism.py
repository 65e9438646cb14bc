"""Demo training gives bit-identical weights whatever the caller's threads and CPU features (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.demo.model_config import DemoModelConfig
from app.demo.numerics import PINNED_ENV, weights_sha256
from app.demo.train_child import train_in_child

ROOT = Path(__file__).resolve().parents[2]

# What differs between two machines of one kind, as an environment can emulate it: the thread count
# torch would pick (the cores), the ISA MKL and oneDNN dispatch to, and the ATen kernels.
MACHINES = {
    "one core": {"OMP_NUM_THREADS": "1"},
    "two cores, no AVX-512": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                              "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx512"},
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
    result = subprocess.run([sys.executable, "-m", "app.demo.train_child", "{}", str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "not pinned" in result.stderr


def test_cache_key_follows_the_numerics_not_the_thread_count(monkeypatch):
    import torch

    from app.demo import build
    from app.demo.corpus import build_corpus

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
