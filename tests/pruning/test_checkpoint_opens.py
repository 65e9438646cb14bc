"""One `run_prune` opens its source checkpoint once: every shard header and the index are parsed one time.

The checks, the calibration pass and the writer share one `Checkpoint` (moeprune/formats/checkpoint.py),
so what the checks passed is exactly what the pass reads and the writer slices. The written output is
opened again (its own headers, for the manifest); that is not the source and is not counted here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from moeprune.formats import checkpoint as checkpoint_module
from moeprune.formats.checkpoint import INDEX_NAME
from tests.pruning.conftest import PROMPTS


@pytest.fixture(scope="module")
def sharded_source(tmp_path_factory) -> Path:
    from testkit.tiny_models import build_tiny_model

    return build_tiny_model("qwen3_moe", tmp_path_factory.mktemp("opens") / "src", max_shard_size="300KB")


@pytest.fixture()
def reads(sharded_source, monkeypatch) -> Counter:
    """Counts, per source file name, the shard headers parsed and the index files read."""
    counted: Counter = Counter()
    read_shard, read_text = checkpoint_module.read_shard, Path.read_text

    def counting_read_shard(path):
        if Path(path).parent == sharded_source:
            counted[Path(path).name] += 1
        return read_shard(path)

    def counting_read_text(self, *args, **kwargs):
        if self == sharded_source / INDEX_NAME:
            counted[INDEX_NAME] += 1
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "read_shard", counting_read_shard)
    monkeypatch.setattr(Path, "read_text", counting_read_text)
    return counted


@pytest.mark.parametrize("observe", ["stream", "whole"])
def test_a_prune_with_a_pass_parses_each_source_header_once(sharded_source, reads, observe, tmp_path):
    from pruning.pipeline import run_prune

    shards = sorted(path.name for path in sharded_source.glob("*.safetensors"))
    assert len(shards) > 1  # the index is read too
    calibration = tmp_path / "calibration.jsonl"
    calibration.write_text("".join(json.dumps({"text": text}) + "\n" for text in PROMPTS))
    run_prune(
        sharded_source,
        tmp_path / "out",
        method="frequency",
        ratio=0.5,
        calibration=[str(calibration)],
        samples=len(PROMPTS),
        max_tokens=32,
        observe=observe,
        domain_gate=False,
        progress=False,
    )
    assert reads == Counter({name: 1 for name in [*shards, INDEX_NAME]})


def test_a_prune_from_a_mask_parses_each_source_header_once(sharded_source, reads, tmp_path):
    from moeprune.formats.checkpoint import load_config
    from moeprune.formats.families import family_for
    from pruning.pipeline import run_prune
    from tests.pruning.conftest import fixed_kept

    config = load_config(sharded_source)
    mask = tmp_path / "mask.json"
    mask.write_text(json.dumps(list(fixed_kept(family_for(config).moe_layers(config)).values())))
    reads.clear()
    run_prune(sharded_source, tmp_path / "out", mask_file=mask)
    shards = sorted(path.name for path in sharded_source.glob("*.safetensors"))
    assert reads == Counter({name: 1 for name in [*shards, INDEX_NAME]})
