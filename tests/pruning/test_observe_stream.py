"""The layer-streamed observation pass: in float32 its statistics equal the whole-model pass's, for every
family, so the same experts are kept; bad checkpoints and bad options fail clearly; it says what it costs."""

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from moeprune import cli
from moeprune.errors import UserError
from moeprune.formats.families import family_for
from moeprune.formats.statistics import VECTORS
from pruning.layer_stream import observe_streamed
from pruning.observe import load_model, observe
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
            assert getattr(actual, name) == pytest.approx(getattr(expected, name), rel=1e-9, abs=1e-12), (
                f"layer {index} {name}"
            )


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
    streamed = observe_streamed(
        source, family, config, SEQUENCES, dtype="float32", offload_activations=True, **rule
    ).stats
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


def captured_bytes(err: str) -> str:
    return err.split("captured the inputs of every decoder layer (")[1].split(" of masks")[0]


@pytest.mark.parametrize("model_type", ["qwen3_moe", "gpt_oss"])  # full attention; sliding-window layers too
def test_batches_of_one_shape_store_their_masks_and_position_tables_once(tiny_model_factory, model_type, capsys):
    """Equal-length samples give every batch the same mask and rotary tables: kept once, not per batch
    (exact: the layers get the same bits, and the statistics equal those of one batch at a time)."""
    source, config, family = source_of(tiny_model_factory, model_type)
    same_length = [[(5 * i + j) % 200 + 5 for j in range(16)] for i in range(8)]
    observe_streamed(source, family, config, same_length[:2], dtype="float32", batch_tokens=32)
    one_batch = captured_bytes(capsys.readouterr().err)
    result = observe_streamed(source, family, config, same_length, dtype="float32", batch_tokens=32)
    assert captured_bytes(capsys.readouterr().err) == one_batch  # four batches, one copy
    whole = observe(
        load_model(source, family, dtype="float32"), family, config, same_length, batch_tokens=32, progress=False
    )
    assert_same_statistics(whole, result.stats)


@pytest.mark.parametrize("model_type", ["qwen3_moe", "gpt_oss"])
def test_padded_batches_keep_their_masks_as_bits_and_the_statistics_stay_exact(
    tiny_model_factory, model_type, capsys, monkeypatch
):
    from pruning import stream_storage

    source, config, family = source_of(tiny_model_factory, model_type)
    padded = [[(3 * i + j) % 200 + 5 for j in range(n)] for i, n in enumerate([64, 40, 64, 50])]
    result = observe_streamed(source, family, config, padded, dtype="float32", batch_tokens=128)
    packed = float(captured_bytes(capsys.readouterr().err).removesuffix(" KiB")) * 1024
    monkeypatch.setattr(stream_storage, "PACK_MIN_ELEMENTS", 10**12)
    observe_streamed(source, family, config, padded, dtype="float32", batch_tokens=128)
    unpacked = float(captured_bytes(capsys.readouterr().err).removesuffix(" KiB")) * 1024
    mask = 2 * 64 * 64  # per batch of two: a bool per (query, key) pair (sliding-window layers: one more)
    assert unpacked - packed >= 2 * mask * 7 / 8  # two batches' masks, at one bit instead of one byte each
    whole = observe(
        load_model(source, family, dtype="float32"), family, config, padded, batch_tokens=128, progress=False
    )
    assert_same_statistics(whole, result.stats)


def test_packed_bits_round_trip_exactly():
    import torch

    from pruning.stream_storage import PackedBool

    for shape in [(1,), (7,), (8,), (3, 1, 13, 13), (2, 1, 64, 64)]:
        tensor = torch.rand(shape) > 0.5
        packed = PackedBool.pack(tensor)
        assert packed.nbytes == -(-tensor.numel() // 8) + 2
        assert torch.equal(packed.unpack(), tensor)
    additive = torch.where(torch.rand(2, 1, 64, 64) > 0.5, 0.0, torch.finfo(torch.float32).min)
    assert torch.equal(PackedBool.pack(additive).unpack(), additive)
    assert torch.equal(PackedBool.pack(torch.full((5, 5), float("-inf"))).unpack(), torch.full((5, 5), float("-inf")))
    assert PackedBool.pack(torch.tensor([0.0, 1.0, 2.0])) is None  # three values: not exactly storable
    assert PackedBool.pack(torch.tensor([0.0, float("nan")])) is None


def test_a_tensor_missing_from_the_shards_is_named_with_the_file(tiny_model_factory, tmp_path):
    source, config, family = source_of(tiny_model_factory, "qwen3_moe")
    broken = shutil.copytree(source, tmp_path / "broken")
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["model.layers.1.self_attn.q_proj.weight"]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(
        UserError,
        match=r"no tensor for model\.layers\.1\.self_attn\.q_proj\.weight in "
        r"model\.safetensors",
    ):
        observe_streamed(broken, family, config, SEQUENCES, dtype="float32", **OPTIONS)


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "calibration.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in PROMPTS * 2))
    return path


def test_both_modes_keep_the_same_experts_and_record_how_they_observed(tiny_model_factory, calibration_file, tmp_path):
    source = tiny_model_factory("qwen3_moe")
    manifests = {}
    for mode in ("stream", "whole"):
        out = tmp_path / mode
        code = cli.main(
            [
                "prune",
                str(source),
                "--out",
                str(out),
                "--method",
                "reap",
                "--ratio",
                "0.5",
                "--calibration",
                str(calibration_file),
                "--samples",
                "6",
                "--max-tokens",
                "32",
                "--dtype",
                "float32",
                "--observe",
                mode,
                "--batch-tokens",
                "64",
            ]
        )
        assert code == 0
        manifests[mode] = json.loads((out / "pruning.json").read_text())
    assert manifests["stream"]["kept_experts"] == manifests["whole"]["kept_experts"]
    for mode, manifest in manifests.items():
        observation = manifest["observation"]
        assert (observation["mode"], observation["dtype"], observation["device"]) == (mode, "float32", "cpu")
        assert observation["offload_activations"] is False


def test_offloading_activations_needs_the_streamed_pass(tiny_model_factory, calibration_file, tmp_path, capsys):
    code = cli.main(
        [
            "prune",
            str(tiny_model_factory("qwen3_moe")),
            "--out",
            str(tmp_path / "out"),
            "--method",
            "reap",
            "--ratio",
            "0.5",
            "--calibration",
            str(calibration_file),
            "--observe",
            "whole",
            "--offload-activations",
        ]
    )
    assert code == 2
    assert "needs observe stream" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
