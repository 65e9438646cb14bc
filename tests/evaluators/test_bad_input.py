"""Bad input: unknown task, malformed data, unreachable endpoint, an endpoint without logprobs."""

import json
import socket
import subprocess
import sys
from pathlib import Path

from evaluators.runner import run_eval
from moeprune.cli import main
from tests.evaluators.endpoints import endpoint

REPO = Path(__file__).resolve().parents[2]


def test_unknown_task_lists_valid_names(tmp_path, capsys):
    code = main(
        ["eval", "--endpoint", "http://127.0.0.1:1", "--model", "m", "--tasks", "bio_qa,bogus", "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unknown task 'bogus'" in err and "general_nota" in err


def test_malformed_data_file_names_the_line(tmp_path, capsys):
    data = tmp_path / "items.jsonl"
    data.write_text('{"question": "q", "options": ["a", "b"], "answer": "A"}\n{"question": \n')
    code = main(
        [
            "eval",
            "--endpoint",
            "http://127.0.0.1:1",
            "--model",
            "m",
            "--tasks",
            f"jsonl={data}",
            "--out",
            str(tmp_path / "out"),
            "--strict",
        ]
    )  # without --strict the bad row is skipped
    err = capsys.readouterr().err
    assert code == 2 and "items.jsonl, line 2" in err
    assert not (tmp_path / "out" / "report_card.json").exists()


def test_unreachable_endpoint_is_one_clear_line_without_traceback(tmp_path, eval_sets):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "moeprune.cli",
            "eval",
            "--endpoint",
            f"http://127.0.0.1:{port}",
            "--model",
            "tiny",
            "--tasks",
            f"jsonl={eval_sets / 'bio.jsonl'}",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"cannot reach endpoint http://127.0.0.1:{port}" in lines[0] and "--endpoint" in lines[0]


def test_endpoint_without_logprobs_reports_them_unavailable(tmp_path, eval_sets):
    # Answers "D" to everything: right on fake and NOTA items (abstain / none of the above).
    with endpoint(lambda request: "D", model="plain") as (url, engine):
        card_path = run_eval(
            url,
            "plain",
            [f"jsonl={eval_sets / 'fake.jsonl'}", f"jsonl={eval_sets / 'bio.jsonl'}"],
            tmp_path / "out",
            progress=False,
        )
    card = json.loads(card_path.read_text())
    fake = card["tasks"]["jsonl-fake"]["metrics"]
    assert fake["exact_match"]["value"] == 1.0 and fake["refusal_rate"]["value"] == 1.0
    assert fake["hallucination_rate"]["value"] == 0.0
    for name in ("option_ll_accuracy", "ece", "brier"):
        assert fake[name]["value"] is None and "logprobs" in fake[name]["unavailable"]
    assert card["flags"] == {}
    assert "no token logprobs" in card["flags_unavailable"]["low_confidence"]
    bio = card["tasks"]["jsonl-bio"]["metrics"]
    assert bio["exact_match"]["value"] == 2 / 8  # "D" is right for the two items whose answer is D
    assert len(engine.requests) > 0


def test_judge_needs_a_base_and_api_key_env_must_be_set(tmp_path, capsys, monkeypatch, eval_sets):
    task = f"jsonl={eval_sets / 'bio.jsonl'}"
    code = main(
        [
            "eval",
            "--endpoint",
            "http://127.0.0.1:1",
            "--model",
            "m",
            "--tasks",
            task,
            "--judge-endpoint",
            "http://127.0.0.1:1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2 and "--base-endpoint" in capsys.readouterr().err
    monkeypatch.delenv("MOEPRUNE_TEST_KEY", raising=False)
    code = main(
        [
            "eval",
            "--endpoint",
            "http://127.0.0.1:1",
            "--model",
            "m",
            "--tasks",
            task,
            "--api-key-env",
            "MOEPRUNE_TEST_KEY",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2 and "MOEPRUNE_TEST_KEY is not set" in capsys.readouterr().err
    code = main(
        [
            "eval",
            "--endpoint",
            "http://127.0.0.1:1",
            "--model",
            "m",
            "--tasks",
            task,
            "--limit",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2 and "--limit" in capsys.readouterr().err


def test_api_key_is_sent_as_bearer_token(tmp_path, eval_sets, monkeypatch):
    monkeypatch.setenv("MOEPRUNE_TEST_KEY", "sekrit")
    with endpoint(lambda request: "A", model="m") as (url, engine):
        assert (
            main(
                [
                    "eval",
                    "--endpoint",
                    url,
                    "--model",
                    "m",
                    "--tasks",
                    f"jsonl={eval_sets / 'bio.jsonl'}",
                    "--api-key-env",
                    "MOEPRUNE_TEST_KEY",
                    "--limit",
                    "1",
                    "--no-progress",
                    "--out",
                    str(tmp_path),
                ]
            )
            == 0
        )
    assert engine.requests[-1].headers.get("authorization") == "Bearer sekrit"
