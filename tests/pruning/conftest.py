"""Pruning-core fixtures: every family's tiny model, pruned once per session with a fixed selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.tiny_models import TINY_CONFIGS

# Every family (and layout) with a tiny model: the correctness tests run on all of them.
TINY_FAMILIES = sorted(TINY_CONFIGS)
# Real sentences from the tokenizer's domain, so routing sees varied tokens.
PROMPTS = [
    "Metformin is a biguanide used to treat type 2 diabetes.",
    "Question: Which organ does hepatitis affect? Answer: the liver.",
    "Paris is the capital of France and the symbol of gold is Au.",
]


def fixed_kept(moe_layers: list[int]) -> dict[int, list[int]]:
    """A different selection per layer, 4 of 8 experts, two from each half (valid for 2 routing groups)."""
    patterns = [[0, 2, 5, 7], [1, 3, 4, 6], [0, 1, 6, 7]]
    return {layer: patterns[i % len(patterns)] for i, layer in enumerate(moe_layers)}


@pytest.fixture(scope="session")
def pruned_factory(tiny_model_factory, tmp_path_factory):
    """(family) -> (source_dir, pruned_dir, kept), each built once per session."""
    from moeprune.formats.checkpoint import load_config
    from moeprune.formats.families import family_for
    from pruning.writer import write_pruned

    built: dict[str, tuple[Path, Path, dict]] = {}

    def make(model_type: str):
        if model_type not in built:
            source = tiny_model_factory(model_type)
            config = load_config(source)
            kept = fixed_kept(family_for(config).moe_layers(config))
            out = write_pruned(
                source,
                tmp_path_factory.mktemp(f"pruned-{model_type}") / "out",
                kept,
                {"method": "manual", "ratio": 0.5, "allocation": "uniform", "seed": 0},
            )
            built[model_type] = (source, out, kept)
        return built[model_type]

    return make
