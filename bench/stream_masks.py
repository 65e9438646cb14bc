"""How much the layer-streamed pass keeps of each batch's layer inputs (masks, position tables), packed vs not.

    .venv/bin/python bench/stream_masks.py

Tiny local models (built here, nothing downloaded), 32 calibration samples of 128-255 tokens in padded
batches of 1,024 tokens, float32. Each family is observed twice: as the pass runs (two-valued masks
bit-packed, equal tensors shared, `pruning/stream_storage.py`) and with packing switched off, and the
pass's own "captured the inputs" line is printed for both. Qwen3-MoE gets boolean masks (SDPA),
gpt-oss float32 additive masks (eager attention with sinks, plus sliding-window layers).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moeprune.formats.families import family_for  # noqa: E402
from pruning import stream_storage  # noqa: E402
from pruning.layer_stream import observe_streamed  # noqa: E402
from testkit.tiny_models import build_tiny_model  # noqa: E402


def main() -> int:
    rng = random.Random(0)
    sequences = [[rng.randrange(5, 200) for _ in range(rng.randrange(128, 256))] for _ in range(32)]
    packed_default = stream_storage.PACK_MIN_ELEMENTS
    with tempfile.TemporaryDirectory() as work:
        for name in ("qwen3_moe", "gpt_oss"):
            source = build_tiny_model(name, Path(work) / name)
            config = json.loads((source / "config.json").read_text())
            for label, limit in (("packed", packed_default), ("unpacked", 10**12)):
                stream_storage.PACK_MIN_ELEMENTS = limit
                print(f"== {name}, {label}", file=sys.stderr, flush=True)
                observe_streamed(source, family_for(config), config, sequences, dtype="float32", batch_tokens=1024)
    stream_storage.PACK_MIN_ELEMENTS = packed_default
    return 0


if __name__ == "__main__":
    sys.exit(main())
