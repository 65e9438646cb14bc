import json
import math

import pytest
import torch
from torch import nn

from moeprune.errors import UserError
from moeprune.formats.families import Family, family_for
from pruning.observe import ExpertObserver, load_model, observe, require_transformers, token_batches
from testkit.tiny_models import TINY_CONFIGS

# ---------------------------------------------------------------- a toy MoE with known numbers

SCALES = [1.0, 2.0, 3.0, 4.0]  # E_i(x) = SCALES[i] * swap(x): norms are easy, directions change


class ToyExperts(nn.Module):
    """Fused experts with the transformers-5 call convention experts(hidden, top_k_index, top_k_weights)."""

    def forward(self, hidden, top_k_index, top_k_weights):
        factor = (top_k_weights * torch.tensor(SCALES)[top_k_index]).sum(-1, keepdim=True)
        return factor * hidden.flip(-1)


class ToyBlock(nn.Module):
    def __init__(self, index, weights):
        super().__init__()
        self.gate, self.experts = nn.Identity(), ToyExperts()
        self.index, self.weights = torch.tensor(index), torch.tensor(weights)

    def forward(self, hidden):
        flat = hidden.reshape(-1, hidden.shape[-1])
        return self.experts(flat, self.index, self.weights).reshape(hidden.shape)


class ToyModel(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.embedding = torch.tensor([[7.0, 7.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
        self.model = nn.Module()
        layer = nn.Module()
        layer.mlp = block
        self.model.layers = nn.ModuleList([layer])
        self.anchor = nn.Parameter(torch.zeros(1))  # so the observer finds a device

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        hidden = self.embedding[input_ids]
        return hidden + self.model.layers[0].mlp(hidden)


def cos(a, b):
    return (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))


def test_toy_block_statistics_equal_hand_computed_values():
    # Sequences [t1, t2] and [t3] are padded into one batch: flattened t1, t2, t3, pad.
    # Router choice per flattened token (raw weights; g renormalises them to sum 1):
    #   t1 x=(3,4): experts 0 (0.6), 1 (0.2) -> g = 0.75, 0.25
    #   t2 x=(1,0): experts 2 (0.5), 1 (0.5) -> g = 0.5, 0.5
    #   t3 x=(0,2): experts 2 (0.45), 0 (0.05) -> g = 0.9, 0.1
    #   pad       : expert 3 (must not be counted)
    block = ToyBlock([[0, 1], [2, 1], [2, 0], [3, 3]], [[0.6, 0.2], [0.5, 0.5], [0.45, 0.05], [0.5, 0.5]])
    family = Family(model_type="toy", expert_count_keys=("num_experts",))
    config = {"num_experts": 4, "num_experts_per_tok": 2}
    stats = observe(
        ToyModel(block),
        family,
        config,
        [[1, 2], [3]],
        batch_tokens=100,
        ean_max_tokens=2,
        pad_token_id=0,
        progress=False,
    )
    layer = stats.layers[0]
    assert layer.tokens == 3 and layer.ean_tokens == 2
    assert layer.counts == [2, 2, 2, 0]
    assert layer.gate_sum == pytest.approx([0.75 + 0.1, 0.25 + 0.5, 0.5 + 0.9, 0])
    # ||E_i(x)||: t1: E0 = 5, E1 = 10; t2: E2 = 3, E1 = 2; t3: E2 = 6, E0 = 2
    assert layer.reap_sum == pytest.approx([0.75 * 5 + 0.1 * 2, 0.25 * 10 + 0.5 * 2, 0.5 * 3 + 0.9 * 6, 0])
    # s_t = 1 - cos(x, x + sum_j g_j E_j(x)); E_j(x) = c_j * swap(x)
    s1 = 1 - cos((3, 4), (3 + 1.25 * 4, 4 + 1.25 * 3))
    s2 = 1 - cos((1, 0), (1, 2.5))
    s3 = 1 - cos((0, 2), (2.8 * 2, 2))
    assert layer.easyep_sum == pytest.approx(
        [s1 * 0.75 * 5 + s3 * 0.1 * 2, s1 * 0.25 * 10 + s2 * 0.5 * 2, s2 * 0.5 * 3 + s3 * 0.9 * 6, 0], rel=1e-5
    )  # fp32
    # EAN: every expert on the first 2 tokens only (t1: 5 c_i, t2: 1 c_i)
    assert layer.ean_sum == pytest.approx([6.0, 12.0, 18.0, 24.0])


def test_batches_respect_the_token_budget_and_stream_order():
    sequences = [[1] * 5, [2] * 3, [3] * 6, [4] * 1]
    batches = list(token_batches(sequences, batch_tokens=10))
    assert [s for batch in batches for s in batch] == sequences
    assert all(max(map(len, b)) * len(b) <= 10 or len(b) == 1 for b in batches)
    assert list(token_batches([[1] * 50], batch_tokens=10)) == [[[1] * 50]]  # a long sample runs alone


# ---------------------------------------------------------------- real tiny models of every family

FAMILIES = sorted(TINY_CONFIGS)
SEQUENCES = [[(7 * i + j) % 200 + 5 for j in range(n)] for i, n in enumerate([23, 9, 31, 17])]


@pytest.fixture(scope="module")
def loaded(tiny_model_factory):
    cache = {}

    def load(model_type):
        if model_type not in cache:
            source = tiny_model_factory(model_type)
            config = json.loads((source / "config.json").read_text())
            family = family_for(config)
            cache[model_type] = (load_model(source, family), family, config)
        return cache[model_type]

    return load


@pytest.mark.parametrize("model_type", FAMILIES)
def test_single_expert_calls_reproduce_the_fused_experts_output(loaded, model_type):
    """The generic convention the pass relies on: experts(x, [[i]], [[1]]) == E_i(x)."""
    model, family, config = loaded(model_type)
    seen = {}

    def capture(module, args):
        seen.setdefault(id(module), (module, args))

    blocks = family.moe_blocks(model)
    handles = [getattr(b, family.experts_attr).register_forward_pre_hook(capture) for b in blocks.values()]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([SEQUENCES[0]]), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == len(blocks) > 0
    for experts, (hidden, index, weights) in seen.values():
        with torch.no_grad():
            fused = experts(hidden, index, weights)
            k = index.shape[-1]
            single = experts(
                hidden.repeat_interleave(k, 0), index.reshape(-1, 1), torch.ones(index.numel(), 1, dtype=weights.dtype)
            )
            rebuilt = (weights.reshape(-1, k, 1) * single.reshape(-1, k, single.shape[-1])).sum(1)
        torch.testing.assert_close(rebuilt, fused, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_observation_pass_statistics_are_consistent(loaded, model_type):
    model, family, config = loaded(model_type)
    top_k = family.top_k(config)
    tokens = sum(map(len, SEQUENCES))
    stats = observe(model, family, config, SEQUENCES, batch_tokens=64, ean_max_tokens=50, progress=False)
    assert sorted(stats.layers) == family.moe_layers(config)
    for layer in stats.layers.values():
        assert layer.tokens == tokens and layer.ean_tokens == 50
        assert sum(layer.counts) == tokens * top_k  # every token routed to top-k experts
        assert sum(layer.gate_sum) == pytest.approx(tokens)  # renormalised gates sum to 1 per token
        assert all(v >= 0 and math.isfinite(v) for v in layer.reap_sum + layer.ean_sum + layer.easyep_sum)
        assert all(e > 0 for e in layer.ean_sum)  # every expert ran on the EAN subset
        routed = [r > 0 for r in layer.reap_sum]
        assert routed == [c > 0 for c in layer.counts]
        assert sum(layer.easyep_sum) > 0


def test_padding_and_batching_do_not_change_the_statistics(loaded):
    model, family, config = loaded("qwen3_moe")
    one_by_one = observe(model, family, config, SEQUENCES, batch_tokens=1, ean_max_tokens=40, progress=False)
    padded = observe(model, family, config, SEQUENCES, batch_tokens=10_000, ean_max_tokens=40, progress=False)
    for index, layer in one_by_one.layers.items():
        other = padded.layers[index]
        assert layer.counts == other.counts
        for name in ("gate_sum", "reap_sum", "ean_sum", "easyep_sum"):
            assert getattr(layer, name) == pytest.approx(getattr(other, name), rel=1e-4, abs=1e-6)


def test_a_layer_whose_hooks_never_fire_is_an_error_not_silent_zeros(loaded, monkeypatch):
    """Under transformers 4.x the experts are not called the way the hooks expect: no statistic is collected."""
    model, family, config = loaded("qwen3_moe")
    monkeypatch.setattr(ExpertObserver, "_hook_for", lambda self, layer: lambda module, args, kwargs: None)
    with pytest.raises(UserError, match=r"saw no routed tokens in MoE layer\(s\) \[0, 1\]"):
        observe(model, family, config, SEQUENCES, batch_tokens=64, ean_max_tokens=0, progress=False)


def test_transformers_older_than_5_is_refused_before_any_work(loaded, monkeypatch):
    import transformers

    model, family, config = loaded("qwen3_moe")
    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    with pytest.raises(UserError, match=r"transformers 4\.57\.1 is installed.*>= 5"):
        observe(model, family, config, SEQUENCES, progress=False)
    require_transformers("5.19.0")  # the pinned version passes
