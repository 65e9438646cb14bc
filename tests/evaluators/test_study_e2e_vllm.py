"""End to end on a real vLLM CPU server: the study's biomedical suite over the published-layout fixtures,
plus an lm-eval task on a local file, into one card that `moeprune report` renders."""

import json
import textwrap
from pathlib import Path

import pytest

from evaluators.tasks import SUITES
from moeprune.cli import main
from moeprune.formats.report_card import ReportCard

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures" / "study"
LM_EVAL_TASK = """
task: tiny_local_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
metric_list:
  - metric: exact_match
"""
LM_EVAL_ITEMS = [
    {"question": "Which organ does hepatitis affect?", "answer": "the liver"},
    {"question": "What does metformin treat?", "answer": "type 2 diabetes"},
]


@pytest.fixture(scope="module")
def study_run(tiny_vllm_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("study-e2e")
    data = root / "lm_items.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in LM_EVAL_ITEMS))
    include = root / "lm_tasks"
    include.mkdir()
    (include / "tiny_local_gen.yaml").write_text(textwrap.dedent(LM_EVAL_TASK.format(data=data)))
    out = root / "out"
    code = main(
        [
            "eval",
            "--endpoint",
            tiny_vllm_url + "/v1",
            "--model",
            "tiny",
            "--suite",
            "study-biomedical",
            "--data-dir",
            str(FIXTURES),
            "--limit",
            "1",
            "--max-tokens",
            "4",
            "--concurrency",
            "4",
            "--chat-template-kwargs",
            '{"enable_thinking": false}',
            "--lm-eval",
            "tiny_local_gen",
            "--lm-eval-include",
            str(include),
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    print("run_info", (out / "run_info.json").read_text())  # phase timings, shown with -s
    return {"root": root, "out": out, "card": json.loads((out / "report_card.json").read_text())}


def test_the_card_has_every_task_of_the_suite(study_run):
    card = study_run["card"]
    ReportCard.model_validate(card)
    suite = set(SUITES["study-biomedical"])
    assert suite <= set(card["tasks"])
    for name in suite:
        task = card["tasks"][name]
        # Each task either scored its item or says why not (counted, with reasons): never silently absent.
        assert task["n"] + task["n_failed"] + task["n_skipped"] >= 1, name
        assert task["n"] == 0 or task["metrics"], name
        assert task["decoding"]["max_tokens"] <= 4, name
        if task.get("thinking"):
            assert task["thinking"]["chat_template_kwargs"] == {"enable_thinking": False}
    # The tiny server's context is 512 tokens: an item that does not fit is skipped by its task's
    # over-long policy (counted with the reason); nothing else may keep a task from scoring.
    # (Rows the loader skipped carry line numbers: the fixtures hold deliberately bad rows.)
    unscored = {
        name: [
            *card["tasks"][name]["failures"],
            *(reason for reason, entry in card["tasks"][name]["skipped"].items() if not entry["lines"]),
        ]
        for name in suite
        if card["tasks"][name]["n"] == 0
    }
    assert all(reason.startswith("over-long") for reasons in unscored.values() for reason in reasons), unscored
    assert len(unscored) <= len(suite) // 4, unscored
    assert card["endpoint"].endswith(":" + card["endpoint"].rsplit(":", 1)[1]) and "/v1" not in card["endpoint"]


def test_an_lm_eval_task_folds_into_the_card(study_run):
    task = study_run["card"]["tasks"]["lm_eval:tiny_local_gen"]
    assert task["kind"] == "lm_eval" and task["n"] == 1 and task["domain"] == "general"  # --limit 1
    assert 0 <= task["metrics"]["exact_match"]["value"] <= 1
    assert task["thinking"] == {"chat_template_kwargs": {"enable_thinking": False}, "reasoning_effort": None}


def test_the_cache_holds_only_what_the_metrics_read(study_run):
    lines = (study_run["out"] / "cache" / "responses.jsonl").read_text().splitlines()
    assert lines and max(len(line) for line in lines) < 8000
    assert not any('"bytes"' in line or '"decoded_token"' in line for line in lines)


def test_report_renders_the_study_card(study_run):
    report = study_run["root"] / "report"
    assert main(["report", str(study_run["out"] / "report_card.json"), "--out", str(report)]) == 0
    page = (report / "index.html").read_text()
    assert "multimedqa_pubmedqa" in page and "medinst32_biosses" in page and "lm_eval:tiny_local_gen" in page
