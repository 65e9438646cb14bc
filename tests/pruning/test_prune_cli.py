"""`moeprune prune` end to end on the tiny Qwen3-MoE: a calibration pass, re-scoring, masks, errors."""

import json

import pytest

from moeprune import cli
from moeprune.errors import UserError
from moeprune.formats.statistics import ExpertStats
from pruning.methods import score
from pruning.pipeline import run_prune
from pruning.selection import Routing, select_uniform


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "med.jsonl"
    rows = [{"text": f"Patient {i} took metformin for type 2 diabetes; the liver metabolises drugs."} for i in range(6)]
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


@pytest.fixture(scope="module")
def first_run(tiny_qwen3_moe, calibration_file, tmp_path_factory):
    """A REAP 50% prune that also saves the pass's statistics."""
    work = tmp_path_factory.mktemp("prune")
    out, stats = work / "reap-50", work / "stats.json"
    code = cli.main(
        [
            "prune",
            str(tiny_qwen3_moe),
            "--out",
            str(out),
            "--method",
            "reap",
            "--ratio",
            "0.5",
            "--calibration",
            str(calibration_file),
            "--samples",
            "5",
            "--max-tokens",
            "24",
            "--batch-tokens",
            "64",
            "--ean-max-tokens",
            "32",
            "--scores-out",
            str(stats),
        ]
    )
    assert code == 0
    return work, out, stats


def read_json(path):
    return json.loads(path.read_text())


def test_method_run_writes_the_ranked_selection_and_its_provenance(first_run, capsys):
    work, out, stats_path = first_run
    stats = ExpertStats.load(stats_path)
    expected = select_uniform(score(stats, "reap"), 0.5, Routing(8, 2))
    manifest = read_json(out / "pruning.json")
    assert manifest["method"] == "reap" and manifest["ratio"] == 0.5 and manifest["allocation"] == "uniform"
    assert manifest["kept_experts"] == {str(layer): sorted(kept) for layer, kept in expected.items()}
    assert read_json(out / "expert_mask.json") == [expected[0], expected[1]]  # rank order, best first
    calibration = manifest["calibration"]
    assert calibration["samples"] == 5 and calibration["tokens"] <= 5 * 24
    assert calibration["sha256"] == stats.calibration["sha256"] and len(calibration["sha256"]) == 64
    assert read_json(out / "config.json")["num_local_experts"] == 4
    assert stats.layers[0].tokens == calibration["tokens"]


def test_scores_in_rescores_another_method_and_ratio_without_a_pass(first_run, tiny_qwen3_moe, capsys):
    work, _, stats_path = first_run
    out = work / "frequency-25"
    code = cli.main(
        [
            "prune",
            str(tiny_qwen3_moe),
            "--out",
            str(out),
            "--method",
            "frequency",
            "--ratio",
            "0.25",
            "--scores-in",
            str(stats_path),
        ]
    )
    assert code == 0
    assert "kept 6 of 8 experts in each of 2 MoE layers" in capsys.readouterr().out
    expected = select_uniform(score(ExpertStats.load(stats_path), "frequency"), 0.25, Routing(8, 2))
    assert read_json(out / "expert_mask.json") == [expected[0], expected[1]]
    recorded = read_json(out / "pruning.json")["calibration"]["sha256"]
    assert recorded == ExpertStats.load(stats_path).calibration["sha256"]


def test_mask_reproduces_a_pruned_checkpoint_byte_for_byte(first_run, tiny_qwen3_moe, capsys):
    work, out, _ = first_run
    again = work / "from-mask"
    assert cli.main(["prune", str(tiny_qwen3_moe), "--out", str(again), "--mask", str(out / "expert_mask.json")]) == 0
    assert "saved" in capsys.readouterr().out
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    manifest = read_json(again / "pruning.json")
    assert manifest["method"] == "mask" and manifest["mask_file"] == str(out / "expert_mask.json")
    assert manifest["kept_experts"] == read_json(out / "pruning.json")["kept_experts"]


def test_ratio_zero_keeps_the_architecture(first_run, tiny_qwen3_moe):
    work, _, stats_path = first_run
    out = run_prune(tiny_qwen3_moe, work / "ratio-0", method="gate", ratio=0.0, scores_in=stats_path)
    assert read_json(out / "config.json")["num_local_experts"] == 8
    assert read_json(out / "pruning.json")["kept_experts"] == {"0": list(range(8)), "1": list(range(8))}


def test_random_needs_no_calibration_and_honours_the_ratio(tiny_qwen3_moe, tmp_path):
    out = run_prune(tiny_qwen3_moe, tmp_path / "random", method="random", ratio=0.75, seed=3)
    assert [len(row) for row in read_json(out / "expert_mask.json")] == [2, 2]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--method", "reap", "--ratio", "0.9", "--calibration", "x.jsonl"], "largest valid ratio is 0.75 "),
        (["--method", "reap", "--ratio", "0.9", "--calibration", "x.jsonl"], "(flag --ratio)"),
        (
            ["--method", "reap", "--ratio", "0.5"],
            "needs calibration files (or scores_in from an earlier pass) (flag --calibration)",
        ),
        (["--mask", "m.json", "--method", "reap"], "drop method (flag --method)"),
        ([], "a method, a ratio and calibration files, or a mask file (flag --method)"),
        (["--method", "reap", "--ratio", "1.0", "--scores-in", "s.json"], "outside [0, 1)"),
    ],
)
def test_bad_invocations_exit_2_with_the_fix(tiny_qwen3_moe, tmp_path, capsys, extra, words):
    assert cli.main(["prune", str(tiny_qwen3_moe), "--out", str(tmp_path / "out"), *extra]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_wrong_sources_and_existing_outputs(tiny_qwen3_moe, tmp_path, capsys):
    assert cli.main(["prune", str(tmp_path / "absent"), "--out", str(tmp_path / "o"), "--mask", "m.json"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    dense = tmp_path / "dense"
    dense.mkdir()
    (dense / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (dense / "model.safetensors").write_bytes(b"")
    assert cli.main(["prune", str(dense), "--out", str(tmp_path / "o"), "--mask", "m.json"]) == 2
    assert "unsupported model_type 'llama'; supported MoE families:" in capsys.readouterr().err
    existing = tmp_path / "exists"
    existing.mkdir()
    assert cli.main(["prune", str(tiny_qwen3_moe), "--out", str(existing), "--method", "random", "--ratio", "0.5"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_unknown_method_lists_valid_names(tiny_qwen3_moe, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["prune", str(tiny_qwen3_moe), "--out", str(tmp_path / "o"), "--method", "magnitude"])
    assert "reap-sum" in capsys.readouterr().err
    with pytest.raises(UserError, match="valid methods: random, frequency, gate, ean, reap, reap-sum, easyep"):
        run_prune(tiny_qwen3_moe, tmp_path / "o", method="magnitude", ratio=0.5)


def test_global_allocation_writes_uneven_counts_and_prints_them(first_run, tiny_qwen3_moe, tmp_path, capsys):
    _, _, stats_path = first_run
    stats = ExpertStats.load(stats_path)
    # Make layer 0 one dominant expert, so a global budget takes more from it than from layer 1.
    stats.layers[0].counts = [1000.0, 1, 1, 1, 1, 1, 1, 1]
    stats.save(tmp_path / "skewed.json")
    out = tmp_path / "out"
    code = cli.main(
        [
            "prune",
            str(tiny_qwen3_moe),
            "--out",
            str(out),
            "--method",
            "frequency",
            "--ratio",
            "0.5",
            "--allocation",
            "global",
            "--scores-in",
            str(tmp_path / "skewed.json"),
        ]
    )
    assert code == 0
    assert "experts kept per layer: 0:2 1:6" in capsys.readouterr().out
    config = read_json(out / "config.json")
    assert config["num_local_experts"] == 6 and config["per_layer_config"] == {"0": {"num_local_experts": 2}}
    assert config["architectures"] == ["Qwen3MoePrunedForCausalLM"]
    manifest = read_json(out / "pruning.json")
    assert manifest["allocation"] == "global" and [len(manifest["kept_experts"][k]) for k in "01"] == [2, 6]


def test_scores_from_another_model_are_refused(tiny_qwen3_moe, tmp_path, calibration_file):
    ExpertStats.empty("qwen3_moe", 4, 2, [0, 1]).save(tmp_path / "other.json")
    with pytest.raises(UserError, match="with 4 experts, not this qwen3_moe model with 8; re-run the pass"):
        run_prune(tiny_qwen3_moe, tmp_path / "o", method="reap", ratio=0.5, scores_in=tmp_path / "other.json")
    with pytest.raises(UserError, match="not both"):
        run_prune(
            tiny_qwen3_moe,
            tmp_path / "o",
            method="reap",
            ratio=0.5,
            scores_in=tmp_path / "other.json",
            calibration=[calibration_file],
        )
