"""The layer-streamed observation pass: in float32 its statistics equal the whole-model pass's, for every
family, so the same experts are kept; bad checkpoints and bad options fail clearly; it says what it costs."""

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from moeprune import cli
from moeprune.errors import UserError
from pruning.families import family_for
from pruning.layer_stream import observe_streamed
from pruning.observe import load_model, observe
from pruning.statistics import VECTORS
from tests.pruning.conftest import PROMPTS, TINY_FAMILIES

# Four samples of different lengths: with batch_tokens 64 they make padded batches of two.
SEQUENCES = [[(7 * i + j) % 200 + 5 for j in range(n)] for i, n in enumerate([23, 9, 31, 17])]
OPTIONS = dict(batch_tokens=64, ean_max_tokens=50, progress=False)


def source_of(tiny_model_factory, model_type):
    source = tiny_model_factory(model_type)
    config = json.loads((source / "config.json").read_text())
    return source, config, family_for(config)


def assert_same_statistics(whole, streamed):
    assert sorted(streamed.layers) == sorted(whole.layers)
    for index, expected in whole.layers.items():
        actual = streamed.layers[index]
        assert (actual.tokens, actual.ean_tokens) == (expected.tokens, expected.ean_tokens)
        assert actual.counts == expected.counts, f"layer {index}"
        for name in VECTORS:
            assert getattr(actual, name) == pytest.approx(getattr(expected, name), rel=1e-9, abs=1e-12), \
                f"layer {index} {name}"


@pytest.mark.parametrize("model_type", TINY_FAMILIES)
def test_streamed_statistics_equal_the_whole_model_pass_in_float32(tiny_model_factory, model_type):
    source, config, family = source_of(tiny_model_factory, model_type)
    whole = observe(load_model(source, family, dtype="float32"), family, config, SEQUENCES, **OPTIONS)
    streamed = observe_streamed(source, family, config, SEQUENCES, dtype="float32", **OPTIONS).stats
    assert streamed.model_type == whole.model_type and streamed.top_k == whole.top_k
    assert_same_statistics(whole, streamed)
    assert all(sum(layer.counts) > 0 for layer in streamed.layers.values())


def test_the_per_sample_ean_rule_and_offloaded_activations_give_the_same_statistics(tiny_model_factory):
    """begin_batch runs once per batch per layer here, once per batch in the whole pass: same EAN rows."""
    source, config, family = source_of(tiny_model_factory, "qwen2_moe")
    rule = dict(OPTIONS, ean_max_tokens=None, ean_tokens_per_sample=5)
    whole = observe(load_model(source, family, dtype="float32"), family, config, SEQUENCES, **rule)
    streamed = observe_streamed(source, family, config, SEQUENCES, dtype="float32", offload_activations=True,
                                **rule).stats
    assert all(layer.ean_tokens == 5 * len(SEQUENCES) for layer in streamed.layers.values())
    assert_same_statistics(whole, streamed)


def test_the_pass_prints_its_buffer_per_layer_progress_and_peak_memory(tiny_model_factory, capsys):
    source, config, family = source_of(tiny_model_factory, "deepseek_v3")  # a dense first layer, then MoE
    result = observe_streamed(source, family, config, SEQUENCES, dtype="float32", batch_tokens=64)
    err = capsys.readouterr().err
    tokens = sum(map(len, SEQUENCES))
    padded = 2 * 23 + 2 * 31  # two batches of two, each padded to its longest sample
    assert result.hidden_state_bytes == padded * config["hidden_size"] * 4
    assert f"hidden-state buffer {result.hidden_state_bytes / 1024:.2f} KiB on cpu" in err
    assert "layer 1/3 (dense)" in err and "layer 3/3 (MoE)" in err
    assert err.count(f"{tokens:,} tokens at ") == 3 and "tok/s" in err and "left" in err
    assert "peak RSS" in err.splitlines()[-1] and result.peak_rss_bytes > 0


def test_a_tensor_missing_from_the_shards_is_named_with_the_file(tiny_model_factory, tmp_path):
    source, config, family = source_of(tiny_model_factory, "qwen3_moe")
    broken = shutil.copytree(source, tmp_path / "broken")
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["model.layers.1.self_attn.q_proj.weight"]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match=r"no tensor for model\.layers\.1\.self_attn\.q_proj\.weight in "
                                        r"model\.safetensors"):
        observe_streamed(broken, family, config, SEQUENCES, dtype="float32", **OPTIONS)


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "calibration.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in PROMPTS * 2))
    return path


def test_both_modes_keep_the_same_experts_and_record_how_they_observed(tiny_model_factory, calibration_file,
                                                                       tmp_path):
    source = tiny_model_factory("qwen3_moe")
    manifests = {}
    for mode in ("stream", "whole"):
        out = tmp_path / mode
        code = cli.main(["prune", str(source), "--out", str(out), "--method", "reap", "--ratio", "0.5",
                         "--calibration", str(calibration_file), "--samples", "6", "--max-tokens", "32",
                         "--dtype", "float32", "--observe", mode, "--batch-tokens", "64"])
        assert code == 0
        manifests[mode] = json.loads((out / "pruning.json").read_text())
    assert manifests["stream"]["kept_experts"] == manifests["whole"]["kept_experts"]
    for mode, manifest in manifests.items():
        observation = manifest["observation"]
        assert (observation["mode"], observation["dtype"], observation["device"]) == (mode, "float32", "cpu")
        assert observation["offload_activations"] is False


def test_offloading_activations_needs_the_streamed_pass(tiny_model_factory, calibration_file, tmp_path, capsys):
    code = cli.main(["prune", str(tiny_model_factory("qwen3_moe")), "--out", str(tmp_path / "out"), "--method",
                     "reap", "--ratio", "0.5", "--calibration", str(calibration_file), "--observe", "whole",
                     "--offload-activations"])
    assert code == 2
    assert "needs observe stream" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
