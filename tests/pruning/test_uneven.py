"""Uneven expert counts per layer (issue 21): the config written, the transformers classes (exactness),
the layer-adaptive allocation, and every refusal before work."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from moeprune.errors import UserError
from moeprune.formats.checkpoint import load_config
from moeprune.formats.expert_counts import UNEVEN_ARCHITECTURES, layer_counts
from moeprune.formats.families import family_for
from pruning.routing_mask import experts_masked
from pruning.selection import Routing, select, select_coverage
from pruning.writer import write_pruned
from testkit.tiny_models import TINY_CONFIGS, auto_model_class
from tests.pruning.conftest import PROMPTS

# Families with an uneven class: the tiny model types whose stock architecture has an uneven variant.
UNEVEN_FAMILIES = [
    "qwen3_moe",
    "olmoe",
    "qwen2_moe",
    "mixtral",
    "gpt_oss",
    "qwen3_5_moe_text",
    "qwen3_5_moe",
    "deepseek_v3",
    "nemotron_h",
]
# Layer 0 keeps 3 experts, layer 1 keeps 5: both above top-k 2, different selections.
UNEVEN_KEPT = {0: [0, 2, 5], 1: [1, 3, 4, 6, 7]}
# Grouped routing (deepseek_v3: MoE layers 1 and 2, dense layer 0, 2 groups of 4 experts): each layer keeps the
# same number from each group, 2 per group in layer 1 and 3 per group in layer 2.
GROUPED_KEPT = {1: [0, 2, 5, 7], 2: [0, 1, 3, 4, 5, 6]}


# nemotron_h: the same two selections on its MoE layers 1 and 3 (layer 0 is Mamba, layer 2 attention).
HYBRID_KEPT = {1: UNEVEN_KEPT[0], 3: UNEVEN_KEPT[1]}


def uneven_kept(model_type: str) -> dict[int, list[int]]:
    return {"deepseek_v3": GROUPED_KEPT, "nemotron_h": HYBRID_KEPT}.get(model_type, UNEVEN_KEPT)


def kept_counts(model_type: str) -> dict[int, int]:
    return {layer: len(experts) for layer, experts in uneven_kept(model_type).items()}


def test_every_uneven_family_has_a_tiny_model_and_a_class():
    import moeprune.models.transformers_uneven as classes
    from moeprune.formats.uneven_serving import NOT_SERVABLE_UNEVEN
    from moeprune.models.vllm_plugin import VLLM_CLASSES

    assert set(UNEVEN_FAMILIES) <= set(TINY_CONFIGS)
    assert {uneven.model_type for _, _, uneven in classes.CLASSES} == set(UNEVEN_FAMILIES)
    assert {uneven.__name__ for _, _, uneven in classes.CLASSES} == set(UNEVEN_ARCHITECTURES.values())
    # A vLLM class for every family vLLM can serve uneven; the others are refused before an engine starts.
    assert set(VLLM_CLASSES) == {
        uneven.__name__ for _, _, uneven in classes.CLASSES if uneven.model_type not in NOT_SERVABLE_UNEVEN
    }


@pytest.fixture(scope="module")
def uneven_factory(tiny_model_factory, tmp_path_factory):
    built = {}

    def make(model_type):
        if model_type not in built:
            source = tiny_model_factory(model_type)
            out = write_pruned(
                source,
                tmp_path_factory.mktemp(f"uneven-{model_type}") / "out",
                uneven_kept(model_type),
                {"method": "manual", "ratio": 0.5, "allocation": "global", "seed": 0},
            )
            built[model_type] = (source, out)
        return built[model_type]

    return make


@pytest.mark.parametrize("model_type", UNEVEN_FAMILIES)
def test_uneven_config_is_per_layer_config_with_a_renamed_architecture(model_type, uneven_factory):
    source, out = uneven_factory(model_type)
    before, config = load_config(source), load_config(out)
    family = family_for(config)
    (key,) = [k for k in family.expert_count_keys if k in family.text_config(before)]
    counts = kept_counts(model_type)
    (small, large) = sorted(counts, key=counts.get)
    text = family.text_config(config)  # the VL layout keeps the text model's keys in text_config
    assert text[key] == counts[large]  # global count = the largest layer's
    assert text["per_layer_config"] == {str(small): {key: counts[small]}}  # only the layers that differ
    assert config["architectures"] == [UNEVEN_ARCHITECTURES[before["architectures"][0]]]
    assert layer_counts(family, config) == counts
    manifest = json.loads((out / "pruning.json").read_text())
    assert {int(k): len(v) for k, v in manifest["kept_experts"].items()} == counts


def test_equal_counts_keep_the_stock_config(tiny_qwen3_moe, tmp_path):
    out = write_pruned(tiny_qwen3_moe, tmp_path / "even", {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}, {})
    config = load_config(out)
    assert "per_layer_config" not in config and config["architectures"] == ["Qwen3MoeForCausalLM"]


def _logits(model, batches):
    with torch.no_grad():
        return [model(input_ids=ids).logits for ids in batches]


def _max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize("model_type", UNEVEN_FAMILIES)
def test_uneven_model_equals_source_with_removed_experts_masked(model_type, uneven_factory, tmp_path):
    """transformers: the auto class (AutoModelForCausalLM, or AutoModelForImageTextToText for the VL layout)
    picks the uneven class by architecture, every layer has its own count, and the logits equal the source's
    with the removed experts' router logits at -inf."""
    from transformers import AutoTokenizer

    import moeprune.models  # noqa: F401  (registers the classes)

    source_dir, pruned_dir = uneven_factory(model_type)
    family = family_for(load_config(source_dir))
    tokenizer = AutoTokenizer.from_pretrained(pruned_dir)
    batches = [torch.tensor([tokenizer.encode(text)]) for text in PROMPTS]
    auto = auto_model_class(model_type)
    pruned, info = auto.from_pretrained(pruned_dir, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(pruned).__name__ == load_config(pruned_dir)["architectures"][0]
    blocks = family.moe_blocks(pruned)
    assert {layer: family.router(block).weight.shape[0] for layer, block in blocks.items()} == kept_counts(model_type)
    source = auto.from_pretrained(source_dir, dtype=torch.float32).eval()
    assert type(source).__name__ == load_config(source_dir)["architectures"][0]  # stock checkpoints: stock class
    unmasked = _logits(source, batches)
    with experts_masked(source, family, uneven_kept(model_type), family.num_experts(load_config(source_dir))):
        expected = _logits(source, batches)
    actual = _logits(pruned.eval(), batches)
    assert _max_diff(actual, expected) <= 1e-5
    assert _max_diff(actual, unmasked) > 1e-2  # the check discriminates
    # save_pretrained keeps the format (and no transient loading flag leaks into config.json).
    pruned.save_pretrained(tmp_path / "resaved")
    resaved, written = load_config(tmp_path / "resaved"), load_config(pruned_dir)
    assert resaved["architectures"] == written["architectures"]
    assert family.text_config(resaved)["per_layer_config"] == family.text_config(written)["per_layer_config"]
    assert not any("allow_global" in key for key in [*resaved, *family.text_config(resaved)])


def test_stock_class_fails_loudly_on_an_uneven_checkpoint(uneven_factory):
    from transformers import Qwen3MoeForCausalLM
    from transformers.integrations.heterogeneity import AmbiguousGlobalPerLayerAttributeError

    _, pruned_dir = uneven_factory("qwen3_moe")
    with pytest.raises(AmbiguousGlobalPerLayerAttributeError, match="num_local_experts"):
        Qwen3MoeForCausalLM.from_pretrained(pruned_dir)


def test_uneven_class_refuses_other_per_layer_differences(uneven_factory):
    from transformers import AutoConfig, AutoModelForCausalLM

    import moeprune.models  # noqa: F401

    _, pruned_dir = uneven_factory("qwen3_moe")
    config = AutoConfig.from_pretrained(pruned_dir)
    config.per_layer_config = {0: {"num_local_experts": 3, "moe_intermediate_size": 32}}
    with pytest.raises(UserError, match="also varies moe_intermediate_size"):
        AutoModelForCausalLM.from_config(config)


# ---- refusals before any work ----


def test_a_layer_below_top_k_is_refused_naming_the_layer(tiny_qwen3_moe, tmp_path):
    with pytest.raises(
        UserError,
        match=r"layer 1: keeping 1 experts leaves fewer than top-k=2; keep at least 2 "
        r"in every layer \(a lower ratio, or min_experts >= 2\)",
    ):
        write_pruned(tiny_qwen3_moe, tmp_path / "out", {0: [0, 1, 2, 3, 4, 5, 6], 1: [3]}, {})
    assert list(tmp_path.iterdir()) == []


def _with_architecture(source, out, architecture: str):
    """A copy of `source` whose config.json names another architecture (as a remote-code checkpoint would)."""
    shutil.copytree(source, out)
    config = load_config(out)
    config["architectures"] = [architecture]
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_an_architecture_without_an_uneven_class_is_refused_before_writing(tiny_model_factory, tmp_path):
    # Every family has an uneven class now; a checkpoint under another architecture name still has none.
    source = _with_architecture(tiny_model_factory("qwen3_moe"), tmp_path / "custom", "Qwen3MoeCustomForCausalLM")
    with pytest.raises(
        UserError,
        match=r"qwen3_moe \(Qwen3MoeCustomForCausalLM\) cannot hold different expert "
        r"counts per layer yet: .*GptOssForCausalLM, MixtralForCausalLM, "
        r"NemotronHForCausalLM, .*; use allocation uniform",
    ):
        write_pruned(source, tmp_path / "out", UNEVEN_KEPT, {})
    assert list(tmp_path.iterdir()) == [source]  # nothing written beside the source


def test_grouped_routing_refuses_a_layer_whose_groups_keep_different_counts(tiny_model_factory, tmp_path):
    source = tiny_model_factory("deepseek_v3")  # MoE layers 1 and 2, 2 routing groups of 4
    with pytest.raises(
        UserError,
        match=r"layer 2: grouped routing \(2 groups of 4\) needs the same number of "
        r"experts kept in every group, got \[3, 2\] per group; select per group",
    ):
        write_pruned(source, tmp_path / "out", {1: [0, 1, 4, 5], 2: [0, 1, 2, 4, 5]}, {})
    with pytest.raises(
        UserError,
        match=r"layer 1: grouped routing scores a group by its top 2 experts, so each of "
        r"the 2 groups must keep >= 2 experts \(keep >= 4 per layer\)",
    ):
        write_pruned(source, tmp_path / "out", {1: [0, 4], 2: [0, 1, 2, 4, 5, 6]}, {})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="allocation coverage is not supported with grouped routing"):
        select_coverage({1: [1.0] * 8}, 0.5, Routing(8, 2, n_group=2, topk_group=1))


def test_grouped_nemotron_h_keeps_the_same_count_per_group_and_the_invariant(tmp_path, monkeypatch):
    """Released Nemotron-H checkpoints route with n_group = 1; with more groups the grouped rules hold for it as
    for deepseek_v3 (each layer keeps the same number in every group), and the uneven model stays exact."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import moeprune.models  # noqa: F401
    from testkit.tiny_models import build_tiny_model

    monkeypatch.setitem(TINY_CONFIGS, "nemotron_h", dict(TINY_CONFIGS["nemotron_h"], n_group=2, topk_group=1))
    source_dir = build_tiny_model("nemotron_h", tmp_path / "source")
    grouped = {1: GROUPED_KEPT[1], 3: GROUPED_KEPT[2]}  # 2 per group of 4, then 3 per group
    with pytest.raises(UserError, match=r"layer 3: grouped routing \(2 groups of 4\) needs the same number"):
        write_pruned(source_dir, tmp_path / "bad", {1: grouped[1], 3: [0, 1, 2, 4, 5]}, {})
    out = write_pruned(source_dir, tmp_path / "out", grouped, {})
    assert layer_counts(family_for(load_config(out)), load_config(out)) == {1: 4, 3: 6}
    tokenizer = AutoTokenizer.from_pretrained(out)
    batches = [torch.tensor([tokenizer.encode(text)]) for text in PROMPTS]
    source = AutoModelForCausalLM.from_pretrained(source_dir, dtype=torch.float32).eval()
    family = family_for(load_config(source_dir))
    with experts_masked(source, family, grouped, 8):
        expected = _logits(source, batches)
    pruned = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(pruned).__name__ == "NemotronHPrunedForCausalLM"
    assert [family.router(block).num_group for block in family.moe_blocks(pruned).values()] == [2, 2]
    assert _max_diff(_logits(pruned, batches), expected) <= 1e-5
    assert _max_diff(_logits(pruned, batches), _logits(source, batches)) > 1e-2


def test_global_allocation_under_grouped_routing_moves_whole_tiers():
    """One expert per group leaves at a time, so every layer keeps the same number in each of its groups."""
    routing = Routing(8, 2, n_group=2, topk_group=1)  # >= 2 per group: a layer keeps 4, 6 or 8
    # Layer 1's mass sits in two experts per group; layer 2 spreads it.
    scores = {1: [50.0, 40, 1, 1, 30, 20, 1, 1], 2: [8.0, 7, 6, 5, 4, 3, 2, 1]}
    ranked = select(scores, 0.25, routing, "global")  # 2 of 8 per layer, 4 in total
    assert ranked == {1: [0, 1, 4, 5], 2: [0, 1, 2, 3, 4, 5, 6, 7]}
    assert select(scores, 0.5, routing, "global") == select(scores, 0.5, routing, "uniform")  # only 4 + 4 fits
    with pytest.raises(
        UserError,
        match=r"removes 12 experts in total, but grouped routing with a floor of 4 per "
        r"layer allows at most 8; lower ratio or min_experts",
    ):
        select(scores, 0.75, routing, "global")


def test_run_prune_refuses_an_uneven_allocation_for_an_architecture_without_a_class_before_the_pass(
    tiny_model_factory, tmp_path
):
    from pruning.pipeline import run_prune

    source = _with_architecture(tiny_model_factory("qwen3_moe"), tmp_path / "custom", "Qwen3MoeCustomForCausalLM")
    with pytest.raises(UserError, match="cannot hold different expert counts per layer yet"):
        # No calibration given: the refusal must come before the pass would be asked for.
        run_prune(source, tmp_path / "out", method="reap", ratio=0.5, allocation="coverage")


def test_pruning_an_uneven_checkpoint_again_is_refused(uneven_factory, tmp_path):
    _, pruned_dir = uneven_factory("qwen3_moe")
    with pytest.raises(UserError, match="prune from the unpruned source instead"):
        write_pruned(pruned_dir, tmp_path / "again", {0: [0, 1], 1: [0, 1, 2]}, {})


# ---- the layer-adaptive rule ----


def test_coverage_keeps_fewer_experts_where_the_mass_is_concentrated():
    routing = Routing(8, 2)
    scores = {0: [100.0, 1, 1, 1, 1, 1, 1, 1], 1: [1.0] * 8, 2: [8.0, 7, 6, 5, 4, 3, 2, 1]}
    ranked = select_coverage(scores, 0.5, routing)
    counts = {layer: len(kept) for layer, kept in ranked.items()}
    assert sum(counts.values()) == 12  # the uniform total: 4 per layer
    assert counts[0] == 2 and counts[1] > counts[2] > counts[0]
    assert ranked[2] == [0, 1, 2, 3][: counts[2]]  # best first, in rank order
    # The floor holds even when one layer would cover everything with fewer.
    floored = select_coverage(scores, 0.5, routing, min_experts=3)
    assert min(len(kept) for kept in floored.values()) == 3 and sum(len(kept) for kept in floored.values()) == 12
    assert select(scores, 0.5, routing, "coverage") == ranked


def test_coverage_with_equal_layers_is_uniform():
    scores = {0: [8.0, 7, 6, 5, 4, 3, 2, 1], 1: [16.0, 14, 12, 10, 8, 6, 4, 2]}
    assert {layer: len(kept) for layer, kept in select_coverage(scores, 0.5, Routing(8, 2)).items()} == {0: 4, 1: 4}


# (allocation, family): both rules on one family, the flat global rank on every other family with a class.
PRUNE_RUNS = [
    ("global", "qwen3_moe"),
    ("coverage", "qwen3_moe"),
    *[("global", model_type) for model_type in UNEVEN_FAMILIES if model_type != "qwen3_moe"],
]


@pytest.mark.parametrize(("allocation", "model_type"), PRUNE_RUNS)
def test_run_prune_with_an_uneven_allocation_keeps_the_invariant(allocation, model_type, tiny_model_factory, tmp_path):
    """Skewed statistics make the allocation uneven; the written model equals the masked source."""
    from transformers import AutoTokenizer

    import moeprune.models  # noqa: F401
    from moeprune.formats.statistics import ExpertStats
    from pruning.pipeline import run_prune

    source_dir = tiny_model_factory(model_type)
    family = family_for(load_config(source_dir))
    first, second = family.moe_layers(load_config(source_dir))
    stats = ExpertStats.empty(model_type, 8, 2, [first, second])
    stats.layers[first].counts = [1000.0, 1, 1, 1, 1, 1, 1, 1]
    stats.layers[second].counts = [5.0, 4, 6, 3, 7, 2, 8, 1]
    stats.save(tmp_path / "skewed.json")
    # Grouped routing (2 groups, >= 2 each) leaves only 4 + 4 at 0.5; at 0.25 a layer may keep 4, 6 or 8.
    ratio = 0.25 if family.group_keys and family.num_groups(load_config(source_dir))[0] > 1 else 0.5
    out = run_prune(
        source_dir,
        tmp_path / "out",
        method="frequency",
        ratio=ratio,
        allocation=allocation,
        scores_in=tmp_path / "skewed.json",
        progress=False,
    )
    manifest = json.loads((out / "pruning.json").read_text())
    kept = {int(layer): experts for layer, experts in manifest["kept_experts"].items()}
    assert len(kept[first]) < len(kept[second]) and len(kept[first]) + len(kept[second]) == 16 * (1 - ratio)
    assert manifest["allocation"] == allocation
    tokenizer = AutoTokenizer.from_pretrained(out)
    batches = [torch.tensor([tokenizer.encode(text)]) for text in PROMPTS]
    source = auto_model_class(model_type).from_pretrained(source_dir, dtype=torch.float32).eval()
    with experts_masked(source, family, kept, 8):
        expected = _logits(source, batches)
    pruned = auto_model_class(model_type).from_pretrained(out, dtype=torch.float32).eval()
    assert type(pruned).__name__ == UNEVEN_ARCHITECTURES[load_config(source_dir)["architectures"][0]]
    assert _max_diff(_logits(pruned, batches), expected) <= 1e-5


# ---- serving checks (no engine started) ----


def test_check_servable_names_the_counts_and_the_fix_without_the_plugin(uneven_factory, tmp_path, monkeypatch):
    from moeprune.formats import uneven_serving as serving
    from testkit.vllm_plugin_env import plugin_pythonpath

    _, pruned_dir = uneven_factory("qwen3_moe")
    if not serving.plugin_installed():
        with pytest.raises(
            UserError,
            match=r"layer 0: 3, layer 1: 5; architecture Qwen3MoePrunedForCausalLM.*"
            r"install moe-prune-serve in the engine's Python environment",
        ):
            serving.check_servable(pruned_dir)
    for entry in reversed(plugin_pythonpath(tmp_path).split(":")):
        monkeypatch.syspath_prepend(entry)
    assert serving.plugin_installed()
    serving.check_servable(pruned_dir)


def test_check_servable_refuses_an_uneven_deepseek_v3_whatever_the_plugin(uneven_factory):
    from moeprune.formats import uneven_serving as serving

    _, pruned_dir = uneven_factory("deepseek_v3")
    with pytest.raises(
        UserError,
        match=r"\(layer 1: 4, layer 2: 6\), which vLLM cannot serve for deepseek_v3: vLLM "
        r"0.32 refuses every heterogeneous MLA model.*it loads in transformers.*"
        r"prune with allocation uniform",
    ):
        serving.check_servable(pruned_dir)
    source_dir, _ = uneven_factory("deepseek_v3")
    serving.check_servable(source_dir)  # the stock (even) checkpoint is served as before


def test_check_servable_refuses_an_uneven_nemotron_h_naming_why_and_what_to_do(uneven_factory, tmp_path, monkeypatch):
    """No vLLM class is built for nemotron_h: vLLM's model reads one global count, and its CPU build cannot run
    the non-gated experts at all. The refusal holds with the plugin installed, and says how to serve instead."""
    from moeprune.formats import uneven_serving as serving

    source_dir, pruned_dir = uneven_factory("nemotron_h")
    monkeypatch.setattr(serving, "plugin_installed", lambda: True)
    with pytest.raises(
        UserError,
        match=r"\(layer 1: 3, layer 3: 5\), which vLLM cannot serve for nemotron_h: "
        r"vLLM 0.32's NemotronH model builds every MoE layer from the one global "
        r"n_routed_experts.*CPU build cannot run nemotron_h's non-gated \(relu2\) "
        r"experts at all.*; serve it with transformers \(AutoModelForCausalLM after "
        r"import moeprune.models\), or prune with allocation uniform and serve that "
        r"with vLLM on a GPU",
    ):
        serving.check_servable(pruned_dir)
    serving.check_servable(source_dir)  # the stock (even) checkpoint is not refused here
    uniform = write_pruned(source_dir, tmp_path / "uniform", {1: [0, 1, 2, 3], 3: [4, 5, 6, 7]}, {})
    serving.check_servable(uniform)  # nor is a uniform prune (a GPU vLLM serves it)


def test_the_gateway_refuses_to_start_an_uneven_variant_where_vllm_would_not_find_its_class(
    uneven_factory, monkeypatch
):
    from app.config.settings import Settings
    from app.config.variants import parse_config
    from app.main import create_app
    from moeprune.formats import uneven_serving as serving

    _, pruned_dir = uneven_factory("qwen3_moe")
    config = parse_config({"variants": {"pruned": {"model": str(pruned_dir)}}})
    monkeypatch.setattr(serving, "plugin_installed", lambda: False)
    with pytest.raises(UserError, match=r"layer 0: 3, layer 1: 5.*moeprune_uneven_experts"):
        create_app(Settings(), config)


def _engine_config(hf_config, **parallel):
    settings = dict(enable_eplb=False, enable_expert_parallel=False, tensor_parallel_size=1, data_parallel_size=1)
    settings.update(parallel)
    return SimpleNamespace(
        model_config=SimpleNamespace(hf_text_config=hf_config), parallel_config=SimpleNamespace(**settings)
    )


def test_engine_settings_that_cannot_work_with_uneven_counts_are_refused(uneven_factory):
    from transformers import AutoConfig

    from moeprune.formats.uneven_serving import refuse_unservable

    _, pruned_dir = uneven_factory("qwen3_moe")
    config = AutoConfig.from_pretrained(pruned_dir)  # layer 0: 3 experts, layer 1: 5
    refuse_unservable(_engine_config(config))
    with pytest.raises(
        UserError,
        match=r"expert load balancing .* keeps layer 0: 3, layer 1: 5; start the engine "
        "without it",
    ):
        refuse_unservable(_engine_config(config, enable_eplb=True, enable_expert_parallel=True))
    with pytest.raises(UserError, match=r"over 2 ranks, but layer 0: 3, layer 1: 5 do not divide by 2"):
        refuse_unservable(_engine_config(config, enable_expert_parallel=True, tensor_parallel_size=2))
    config.per_layer_config = {0: {"num_local_experts": 4}}  # 4 and 5 ... 5 still does not divide by 2
    with pytest.raises(UserError, match=r"but layer 1: 5 do not divide by 2"):
        refuse_unservable(_engine_config(config, enable_expert_parallel=True, data_parallel_size=2))
    refuse_unservable(_engine_config(config, tensor_parallel_size=2))  # tensor parallelism alone is fine


def test_gpt_oss_engine_settings_its_loader_cannot_follow_are_refused(uneven_factory):
    """vLLM's gpt-oss loader slices experts by the global count for expert parallelism and reshapes quantized
    experts with it: both refused for uneven counts, even where the counts divide the rank count."""
    from transformers import AutoConfig

    from moeprune.formats.uneven_serving import refuse_unservable

    _, pruned_dir = uneven_factory("gpt_oss")
    config = AutoConfig.from_pretrained(pruned_dir)
    refuse_unservable(_engine_config(config))
    config.per_layer_config = {0: {"num_local_experts": 4}}  # 4 and 5, 1 rank: divisible, still refused
    with pytest.raises(
        UserError,
        match=r"gpt_oss with different expert counts per layer \(layer 0: 4, layer 1: 5\) "
        r"cannot use expert parallelism .* global count 5; start the engine without",
    ):
        refuse_unservable(_engine_config(config, enable_expert_parallel=True))
    config.quantization_config = {"quant_method": "mxfp4"}
    with pytest.raises(
        UserError,
        match=r"and mxfp4 experts cannot be loaded by vLLM.*write the pruned experts "
        r"unquantized \(bf16\) instead \(moeprune prune --dequantize does that\), or "
        r"prune with allocation uniform",
    ):
        refuse_unservable(_engine_config(config))


def test_uneven_mxfp4_gpt_oss_stays_mxfp4_and_transformers_keeps_the_invariant(tmp_path):
    """MXFP4 experts are sliced per layer like any [E, ...] tensor; transformers dequantizes each layer's
    blocks into its own block's shapes."""
    from transformers import AutoTokenizer

    import moeprune.models  # noqa: F401
    from moeprune.formats.families import FAMILIES
    from tests.support.mxfp4_checkpoint import build_mxfp4_gpt_oss, load_mxfp4_model

    source_dir = build_mxfp4_gpt_oss(tmp_path / "source")
    out = write_pruned(source_dir, tmp_path / "out", UNEVEN_KEPT, {})
    config = load_config(out)
    assert config["quantization_config"]["quant_method"] == "mxfp4"
    assert config["per_layer_config"] == {"0": {"num_local_experts": 3}}
    pruned, info = load_mxfp4_model(out)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(pruned).__name__ == "GptOssPrunedForCausalLM"
    source, _ = load_mxfp4_model(source_dir)
    tokenizer = AutoTokenizer.from_pretrained(out)
    batches = [torch.tensor([tokenizer.encode(text)]) for text in PROMPTS]
    family = FAMILIES["gpt_oss"]
    with experts_masked(source, family, UNEVEN_KEPT, 8):
        expected = _logits(source, batches)
    # transformers dequantizes MXFP4 experts to bf16 and computes them in bf16, where the CPU's matmul blocking
    # (it depends on the expert count and on the CPU) changes the rounding: 0 on an Intel Xeon, 5.5e-4 on an
    # AMD EPYC (2026-12-06), against 0.84 when the removed experts are not masked. The bound sits between.
    assert _max_diff(_logits(pruned, batches), expected) <= 2e-3
    assert _max_diff(_logits(pruned, batches), _logits(source, batches)) > 1e-1
