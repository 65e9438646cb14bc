"""EAN's per-sample token rule (the study's: every expert on the first N tokens of every sample)."""

import json

import pytest

from moeprune.errors import UserError
from moeprune.formats.families import Family, family_for
from moeprune.formats.statistics import ExpertStats
from pruning.observe import ExpertObserver, default_ean_limits, load_model, observe
from tests.pruning.test_observe import SCALES, SEQUENCES, ToyBlock, ToyModel

TOY_FAMILY = Family(model_type="toy", expert_count_keys=("num_experts",))
TOY_CONFIG = {"num_experts": 4, "num_experts_per_tok": 2}


def toy_stats(**ean):
    # Sequences [t1, t2] and [t3] in one padded batch, as in test_observe's hand-computed toy.
    block = ToyBlock([[0, 1], [2, 1], [2, 0], [3, 3]], [[0.6, 0.2], [0.5, 0.5], [0.45, 0.05], [0.5, 0.5]])
    return observe(
        ToyModel(block), TOY_FAMILY, TOY_CONFIG, [[1, 2], [3]], batch_tokens=100, pad_token_id=0, progress=False, **ean
    ).layers[0]


def test_per_sample_rule_runs_every_expert_on_each_samples_first_tokens():
    # ||E_i(x)|| = c_i ||x||: t1 = (3, 4) -> 5, t2 = (1, 0) -> 1, t3 = (0, 2) -> 2.
    per_sample = toy_stats(ean_max_tokens=None, ean_tokens_per_sample=1)
    assert per_sample.ean_tokens == 2 and per_sample.ean_sum == pytest.approx([(5 + 2) * c for c in SCALES])
    # The stream prefix of the same size takes t1, t2 instead: the rules differ on the same batch.
    prefix = toy_stats(ean_max_tokens=2)
    assert prefix.ean_tokens == 2 and prefix.ean_sum == pytest.approx([(5 + 1) * c for c in SCALES])
    # Both together: per-sample rows, then at most the cap per layer.
    capped = toy_stats(ean_max_tokens=1, ean_tokens_per_sample=1)
    assert capped.ean_tokens == 1 and capped.ean_sum == pytest.approx([5 * c for c in SCALES])
    # Every other statistic is the same whatever the EAN rule.
    assert per_sample.counts == prefix.counts and per_sample.reap_sum == pytest.approx(prefix.reap_sum)


@pytest.fixture(scope="module")
def qwen3(tiny_model_factory):
    source = tiny_model_factory("qwen3_moe")
    config = json.loads((source / "config.json").read_text())
    family = family_for(config)
    return load_model(source, family), family, config


def test_per_sample_rule_equals_the_study_running_one_sample_per_forward(qwen3):
    """The study ran each sample alone and took its first 256 tokens; batching and padding must not move that."""
    model, family, config = qwen3
    n = 12
    batched = observe(
        model,
        family,
        config,
        SEQUENCES,
        batch_tokens=10_000,
        ean_max_tokens=None,
        ean_tokens_per_sample=n,
        progress=False,
    )
    alone = [
        observe(model, family, config, [sequence], batch_tokens=10_000, ean_max_tokens=n, progress=False)
        for sequence in SEQUENCES
    ]
    for index, layer in batched.layers.items():
        assert (
            layer.ean_tokens == sum(min(len(s), n) for s in SEQUENCES) == sum(a.layers[index].ean_tokens for a in alone)
        )
        summed = [sum(a.layers[index].ean_sum[i] for a in alone) for i in range(batched.num_experts)]
        assert layer.ean_sum == pytest.approx(summed, rel=1e-4)
    assert batched.ean_tokens_per_sample == n and batched.ean_max_tokens is None


def test_the_rule_is_recorded_in_the_statistics_file_and_old_files_still_load(qwen3, tmp_path):
    model, family, config = qwen3
    stats = observe(model, family, config, SEQUENCES, ean_max_tokens=None, ean_tokens_per_sample=8, progress=False)
    path = stats.save(tmp_path / "stats.json")
    again = ExpertStats.load(path)
    assert again.ean_tokens_per_sample == 8 and again.ean_max_tokens is None
    assert again.ean_rule() == {"rule": "per-sample", "tokens_per_sample": 8, "max_tokens_per_layer": None}
    old = json.loads(path.read_text())
    del old["ean_tokens_per_sample"]
    old["ean_max_tokens"] = 4096
    (tmp_path / "old.json").write_text(json.dumps(old))
    legacy = ExpertStats.load(tmp_path / "old.json")
    assert legacy.ean_tokens_per_sample is None
    assert legacy.ean_rule() == {"rule": "stream-prefix", "tokens_per_sample": None, "max_tokens_per_layer": 4096}


def test_a_driver_that_skips_begin_batch_cannot_apply_the_per_sample_rule(qwen3):
    import torch

    model, family, config = qwen3
    observer = ExpertObserver(family.moe_blocks(model), family, family.num_experts(config), None, 4)
    with observer.attached(), torch.no_grad(), pytest.raises(RuntimeError, match="needs begin_batch"):
        model(input_ids=torch.tensor([SEQUENCES[0]]), use_cache=False)


def test_defaults_and_bad_numbers():
    assert default_ean_limits(None, None) == (4096, None)  # no rule given: today's stream prefix
    assert default_ean_limits(None, 256) == (None, 256)  # the study's rule alone: no cap
    assert default_ean_limits(1000, 256) == (1000, 256)
    with pytest.raises(UserError, match="ean_tokens_per_sample must be at least 1"):
        default_ean_limits(None, 0)
    with pytest.raises(UserError, match="ean_max_tokens must be >= 0"):
        default_ean_limits(-1, None)
