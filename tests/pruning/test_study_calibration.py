"""`moeprune prune` with the study's calibration: MedINST + general files with their own counts,
template arguments and EAN's per-sample rule, all recorded in pruning.json and the statistics file."""

import json

import pytest

from moeprune import cli
from moeprune.formats.statistics import ExpertStats


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def study_run(tiny_qwen3_moe, tmp_path_factory):
    work = tmp_path_factory.mktemp("study")
    med = write_jsonl(
        work / "medinst.jsonl",
        [
            {
                "instruction": f"Which organ does hepatitis affect? Case {i}.",
                "input": "" if i % 2 else f"Patient {i}.",
                "output": "The liver.",
            }
            for i in range(6)
        ],
    )
    general = write_jsonl(
        work / "general.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": f"What is the capital of France? ({i})"},
                    {"role": "assistant", "content": "Paris."},
                ]
            }
            for i in range(5)
        ],
    )
    out, stats = work / "ean-50", work / "stats.json"
    code = cli.main(
        [
            "prune",
            str(tiny_qwen3_moe),
            "--out",
            str(out),
            "--method",
            "ean",
            "--ratio",
            "0.5",
            "--calibration",
            f"{med}:4",
            f"{general}:3",
            "--chat-template-kwargs",
            '{"enable_thinking": false}',
            "--ean-tokens-per-sample",
            "6",
            "--max-tokens",
            "40",
            "--scores-out",
            str(stats),
        ]
    )
    assert code == 0
    return med, general, out, stats


def test_pruning_json_records_files_counts_template_arguments_and_the_ean_rule(study_run):
    med, general, out, stats_path = study_run
    calibration = json.loads((out / "pruning.json").read_text())["calibration"]
    assert calibration["files"] == [str(med), str(general)] and calibration["samples"] == 7
    assert calibration["per_file"][str(med)]["requested"] == 4
    assert calibration["per_file"][str(med)]["kinds"] == {"medinst": 4}
    assert calibration["per_file"][str(general)]["samples"] == 3
    assert calibration["chat_template_kwargs"] == {"enable_thinking": False}
    assert calibration["ean"] == {"rule": "per-sample", "tokens_per_sample": 6, "max_tokens_per_layer": None}
    stats = ExpertStats.load(stats_path)
    assert stats.ean_tokens_per_sample == 6 and stats.calibration == calibration
    # 7 samples, each longer than 6 tokens: EAN ran every expert on 6 tokens of each.
    assert all(layer.ean_tokens == 7 * 6 for layer in stats.layers.values())


def test_scores_in_carries_the_calibration_record_into_the_new_pruning_json(study_run, tiny_qwen3_moe, tmp_path):
    _, _, out, stats_path = study_run
    again = tmp_path / "ean-25"
    assert (
        cli.main(
            [
                "prune",
                str(tiny_qwen3_moe),
                "--out",
                str(again),
                "--method",
                "ean",
                "--ratio",
                "0.25",
                "--scores-in",
                str(stats_path),
            ]
        )
        == 0
    )
    first = json.loads((out / "pruning.json").read_text())["calibration"]
    assert json.loads((again / "pruning.json").read_text())["calibration"] == first


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--chat-template-kwargs", "[1]"], "must be a JSON object"),
        (["--ean-tokens-per-sample", "0"], "at least 1"),
    ],
)
def test_bad_study_flags_exit_2_naming_the_flag(tiny_qwen3_moe, tmp_path, capsys, study_run, extra, words):
    med = study_run[0]
    code = cli.main(
        [
            "prune",
            str(tiny_qwen3_moe),
            "--out",
            str(tmp_path / "x"),
            "--method",
            "ean",
            "--ratio",
            "0.5",
            "--calibration",
            str(med),
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and words in err and extra[0] in err
    assert not (tmp_path / "x").exists()
