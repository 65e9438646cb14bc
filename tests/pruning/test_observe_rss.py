"""The layer-streamed pass's peak memory does not grow with depth; the whole-model pass holds every layer.

The same Qwen3-MoE architecture at 4 and 16 decoder layers, with weights that dominate the
process (hidden 512, 48 experts: ~78 MB per layer in bf16, 1.25 GB at 16 layers; the allowance grows with
the layer while the native allocator's few MiB of drift per layer do not), each pass in
a fresh child process whose own high-water mark (ru_maxrss) is the measurement.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.synthetic_moe import MoeShape, write_checkpoint

SHAPE = dict(hidden=512, experts=48, expert_width=512, top_k=4, heads=4, kv_heads=2, head_dim=128, vocab=1024)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    work = tmp_path_factory.mktemp("rss")
    return {depth: write_checkpoint(work / f"layers-{depth}", MoeShape(layers=depth, **SHAPE)) for depth in (4, 16)}


def peak_rss(mode: str, source: Path) -> int:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "testkit.observe_child",
            mode,
            str(source),
            "64",
            "--seq-len",
            "64",
            "--ean-max-tokens",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        # One thread: on a shared 2-core machine OpenMP's spinning threads cost 10x the time.
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss"]


def test_streamed_peak_rss_is_flat_in_depth_and_the_whole_model_one_is_not(checkpoints):
    layer = MoeShape(layers=1, **SHAPE).layer_bytes()
    stream = {depth: peak_rss("stream", source) for depth, source in checkpoints.items()}
    whole = peak_rss("whole", checkpoints[16])
    mib = {"stream": {depth: round(value / 2**20) for depth, value in stream.items()}, "whole": {16: whole >> 20}}
    print(f"one layer {layer / 2**20:.0f} MiB; peak RSS MiB: {mib}")
    # Streamed: 12 more layers cost less than one layer's bytes (+20%).
    assert abs(stream[16] - stream[4]) < 1.2 * layer, mib
    # The whole-model pass on the same 16 layers holds them all (bench/observe_scale.md: it grows with depth).
    assert whole - stream[16] > 12 * layer, mib
