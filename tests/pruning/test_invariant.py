"""The correctness invariant, for every family: the pruned checkpoint computes exactly what the
source computes with the removed experts routed around (router logits -inf), in fp32."""

import pytest
import torch

from moeprune.formats.checkpoint import load_config
from moeprune.formats.families import family_for
from pruning.routing_mask import experts_masked
from testkit.tiny_models import auto_model_class
from tests.pruning.conftest import PROMPTS, TINY_FAMILIES


def load(model_type, path):
    model, info = auto_model_class(model_type).from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    return model.eval(), info


def logits(model, batches):
    with torch.no_grad():
        return [model(input_ids=ids).logits for ids in batches]


def max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize("model_type", TINY_FAMILIES)
def test_pruned_model_equals_source_with_removed_experts_masked(model_type, pruned_factory):
    from transformers import AutoTokenizer

    source_dir, pruned_dir, kept = pruned_factory(model_type)
    config = load_config(source_dir)
    family = family_for(config)
    tokenizer = AutoTokenizer.from_pretrained(pruned_dir)
    batches = [torch.tensor([tokenizer.encode(text)]) for text in PROMPTS]

    pruned, info = load(model_type, pruned_dir)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    source, _ = load(model_type, source_dir)

    expected_unmasked = logits(source, batches)
    with experts_masked(source, family, kept, family.num_experts(config)):
        expected = logits(source, batches)
    actual = logits(pruned, batches)

    assert max_diff(actual, expected) <= 1e-5
    # The check discriminates: without the routing mask the outputs differ clearly.
    assert max_diff(actual, expected_unmasked) > 1e-2
    # And the mask is undone on exit.
    assert max_diff(logits(source, batches), expected_unmasked) == 0


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    import json

    path = tmp_path_factory.mktemp("calibration") / "calibration.jsonl"
    rows = [{"text": text} for text in PROMPTS * 2]
    rows.append(
        {
            "messages": [
                {"role": "user", "content": "Which organ does hepatitis affect?"},
                {"role": "assistant", "content": "The liver."},
            ]
        }
    )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("model_type", TINY_FAMILIES)
def test_every_method_through_run_prune_keeps_the_invariant(model_type, tiny_model_factory, calibration_file, tmp_path):
    """One observation pass per family (saved with --scores-out), then every method from those scores."""
    import json

    from transformers import AutoTokenizer

    from pruning.methods import METHODS
    from pruning.pipeline import run_prune

    source_dir = tiny_model_factory(model_type)
    config = load_config(source_dir)
    family = family_for(config)
    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    batches = [torch.tensor([tokenizer.encode(text)]) for text in PROMPTS]
    source, _ = load(model_type, source_dir)
    stats = tmp_path / "stats.json"
    first, *others = sorted(METHODS)
    runs = [(first, dict(calibration=[calibration_file], samples=7, max_tokens=32, scores_out=stats))]
    runs += [(method, dict(scores_in=stats)) for method in others]
    assert {"random", "frequency", "gate", "ean", "reap", "reap-sum", "easyep"} <= set(METHODS)
    for method, options in runs:
        out = run_prune(source_dir, tmp_path / method, method=method, ratio=0.5, seed=0, progress=False, **options)
        manifest = json.loads((out / "pruning.json").read_text())
        assert manifest["method"] == method
        kept = {int(layer): experts for layer, experts in manifest["kept_experts"].items()}
        assert all(len(experts) == 4 for experts in kept.values())
        pruned, info = load(model_type, out)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        with experts_masked(source, family, kept, family.num_experts(config)):
            expected = logits(source, batches)
        assert max_diff(logits(pruned, batches), expected) <= 1e-5, method
