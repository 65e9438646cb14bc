"""Pinned training numerics: the same demo weights whatever a machine's cores and CPU features, within a vendor.

Not across vendors (measured 2026-12-06, docs/demo.md "What the pins do not cover"): MKL's
pinned AVX2 branch (MKL_CBWR) exists only on Intel CPUs (Intel documents that it is ignored
elsewhere), so an AMD EPYC and an Intel Xeon trained different seed-0 weights under one cache
key. That is why the demo ships its weights
(`demo.shipped`) instead of relying on every machine training the same ones.

Float results depend on the order of additions, and on a CPU that order is
chosen at run time: by the intra-op thread count (how a reduction is split),
by ATen's vectorised kernels (AVX-512, AVX2 or scalar lanes, picked from the
CPU's features) and by MKL's GEMM code path (also picked by CPU features).
Two machines of the same kind can differ in CPU features, so an unpinned
training run gave two different models under one cache key (issue 16).

Training therefore runs in child processes whose environment fixes all
three before torch is imported (ATEN_CPU_CAPABILITY and MKL_CBWR are read
once, at library load): one thread, ATen's AVX2 kernels, and MKL's
AVX2 code path, with `torch.use_deterministic_algorithms(True)`. There are
two such processes (ranks), each on half of every batch, whose gradient sum
is order-free (`demo.rank_sync`), so a 2-core machine trains at twice
the single-thread speed without making the weights depend on it. The
tests train a reduced recipe under different thread counts and emulated CPU
features and compare the weights' sha256.

AVX2 rather than the portable scalar paths: measured per training step,
AVX2 pins 0.32 s, scalar ATen 0.52 s, MKL COMPATIBLE a further +30%; every
x86-64 server CPU of the last decade has AVX2. What is not pinned goes into
the model's cache key instead (`numerics_fingerprint`): the torch and
transformers versions (new kernels are new numerics), the architecture, and
whether the CPU has AVX2 at all (without it both libraries fall back to
other paths, so such a machine trains, and caches, another model).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

# Set in the training child before torch loads. Values are part of the cache key.
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's AVX2 kernels even where AVX-512 is there (picked by CPU features)
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: the AVX2 GEMM code path everywhere
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN, should any op reach it, on the same ISA
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
}
TRAIN_THREADS = 1


def pinned_environment(base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env.update(PINNED_ENV)
    return env


def enter_pinned_numerics() -> None:
    """Called first in the training child: one thread, deterministic algorithms, and a check that the pins took."""
    import torch

    missing = {k: v for k, v in PINNED_ENV.items() if os.environ.get(k) != v}
    if missing:
        raise RuntimeError(f"training numerics not pinned (start it through demo.numerics): {missing}")
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.lower() != PINNED_ENV["ATEN_CPU_CAPABILITY"] and has_avx2():
        raise RuntimeError(f"ATen kernels are {capability!r}, not the pinned {PINNED_ENV['ATEN_CPU_CAPABILITY']!r}")


def has_avx2() -> bool:
    """Whether this CPU can run the pinned AVX2 paths (Linux x86: /proc/cpuinfo; elsewhere: no)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx2" in text and platform.machine() in ("x86_64", "AMD64")


def numerics_fingerprint() -> dict:
    """What still decides the trained weights besides data and recipe (hashed into the cache key)."""
    import torch
    import transformers

    from demo.rank_sync import RANKS

    return {
        "pinned": PINNED_ENV,
        "threads": TRAIN_THREADS,
        "ranks": RANKS,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "avx2": has_avx2(),
    }


def weights_sha256(model_dir: str | Path) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (file layout and metadata do not count)."""
    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in sorted(handle.keys()):
                tensor = handle.get_tensor(name).contiguous()
                digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
                digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
