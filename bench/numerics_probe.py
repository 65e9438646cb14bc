"""Which numerics pin decides the demo's weights on this machine: train a short prefix under each change.

    nice .venv/bin/python bench/numerics_probe.py [--steps 8] [--full-recipe-with MKL_CBWR=COMPATIBLE]

Trains the reduced recipe of tests/demo/test_training_determinism.py (the
first `--steps` steps, the recipe's two ranks) once per row of CHANGES, each
with one entry of the pinned environment (demo.numerics.PINNED_ENV) replaced,
and prints the weights' sha256 per row (about 15 s a row on a 2-core
machine). Rows with equal hashes used the same arithmetic. Compare hashes
only within one machine: the point is which pin moves the bits here, not
the bits themselves. `--full-recipe-with K=V` trains the whole recipe (seed
0, 7-25 minutes) under that one change instead and prints its hash, for
comparison with another machine's run of the same command.

Findings (docs/demo.md, "What the pins do not cover"): MKL's code branch
decides the bits, and the pinned AVX2 branch exists only on Intel CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANGES = {
    "none": {},
    "none, again (same machine, same bits?)": {},
    "ONEDNN_MAX_CPU_ISA=ALL": {"ONEDNN_MAX_CPU_ISA": "ALL"},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "MKL_CBWR=AUTO": {"MKL_CBWR": "AUTO"},
    "MKL_CBWR=AVX512": {"MKL_CBWR": "AVX512"},
    "MKL_CBWR=AVX2,STRICT": {"MKL_CBWR": "AVX2,STRICT"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
}


def child(argv: list[str]) -> int:
    """One training rank with PINNED_ENV changed as NUMERICS_PROBE_CHANGE says (the pins' check follows it)."""
    import demo.numerics
    from demo.train_child import main

    demo.numerics.PINNED_ENV.update(json.loads(os.environ["NUMERICS_PROBE_CHANGE"]))
    return main(argv)


def train(change: dict, steps: int | None, out: Path) -> str:
    from demo.model_config import DemoModelConfig
    from demo.numerics import PINNED_ENV, weights_sha256
    from demo.rank_sync import RANKS

    cfg = DemoModelConfig(max_steps=steps)
    out.mkdir(parents=True)  # the ranks meet through a file in it (demo.rank_sync)
    env = {
        **os.environ,
        **PINNED_ENV,
        **change,
        "GLOO_SOCKET_IFNAME": "lo",
        "NUMERICS_PROBE_CHANGE": json.dumps(change),
        "PYTHONPATH": str(ROOT),
    }
    ranks = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(cfg.as_dict()), str(out), str(rank), "--quiet"],
            env=env,
            cwd=ROOT,
        )
        for rank in range(RANKS)
    ]
    codes = [rank.wait() for rank in ranks]
    return weights_sha256(out) if not any(codes) else f"failed (exit statuses {codes})"


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--full-recipe-with",
        default=None,
        metavar="K=V",
        help="train the whole recipe under this one change (e.g. MKL_CBWR=COMPATIBLE)",
    )
    args = parser.parse_args()
    from demo.shipped import describe_cpu

    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {describe_cpu()}, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.full_recipe_with:
        key, _, value = args.full_recipe_with.partition("=")
        rows, steps = {args.full_recipe_with: {key: value}}, None
    else:
        rows, steps = CHANGES, args.steps
    with tempfile.TemporaryDirectory(prefix="numerics-probe-") as work:
        for index, (name, change) in enumerate(rows.items()):
            started = time.monotonic()
            digest = train(change, steps, Path(work) / str(index))
            print(f"{name:40s} {digest}  ({time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
