from pathlib import Path

import pytest

from evaluators.tasks import SUITES, Task, load_task_file, resolve_tasks, shipped_tasks
from moeprune.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"


def test_shipped_tasks_and_suites_match_the_contract():
    tasks = shipped_tasks()
    assert {"bio_qa", "general_qa", "bio_fake", "general_fake", "bio_nota", "general_nota"} <= set(tasks)
    assert tasks["bio_qa"].path.name == "biomedical_qa.jsonl" and tasks["general_nota"].domain == "general"
    assert [t.name for t in resolve_tasks(["biomedical"])] == list(SUITES["biomedical"])
    assert len(resolve_tasks(["all"])) == 6
    # the shipped sets' options are words a model answers with: scored by text, not letter
    assert {t.score_options_by for name, t in tasks.items() if name in SUITES["all"]} == {"text"}


def test_unknown_task_lists_valid_names():
    with pytest.raises(UserError) as err:
        resolve_tasks(["bio_qa", "nonsense"])
    message = str(err.value)
    assert "nonsense" in message and "bio_qa" in message and "general_fake" in message and "pubmedqa" in message


def test_format_equals_path_specs_make_tasks():
    (task,) = resolve_tasks([f"medqa={FIXTURES / 'medqa.jsonl'}"])
    assert task.name == "medqa-medqa" and task.format == "medqa" and task.kind == "multiple_choice"
    assert len(task.load()) == 2
    (summary,) = resolve_tasks([f"summaries={FIXTURES / 'summaries.jsonl'}"])
    assert summary.kind == "summarisation"
    with pytest.raises(UserError, match="valid formats"):
        resolve_tasks(["csv=/x"])


def test_yaml_task_file(tmp_path):
    (tmp_path / "data.jsonl").write_text((FIXTURES / "generic.jsonl").read_text())
    spec = tmp_path / "tasks.yaml"
    spec.write_text(
        "tasks:\n  - name: capitals\n    format: jsonl\n    path: data.jsonl\n    domain: general\n"
        "    template: completion\n    few_shot: 1\n    version: 2\n"
    )
    tasks = load_task_file(spec)
    expected = Task("capitals", "jsonl", tmp_path / "data.jsonl", "general", "completion", 1, 2)
    assert tasks["capitals"].model_dump() == expected.model_dump()  # the flat form reads as the nested one
    assert tasks["capitals"].few_shot == 1 and tasks["capitals"].template == "completion"
    assert len(tasks["capitals"].load()) == 2
    spec.write_text("- name: x\n  format: jsonl\n  path: d.jsonl\n  colour: red\n")
    with pytest.raises(UserError, match="valid keys"):
        load_task_file(spec)
    spec.write_text("- name: x\n  format: jsonl\n  path: d.jsonl\n  metrics: [exact_match, vibes]\n")
    with pytest.raises(UserError, match="unknown metric.*vibes.*valid: exact_match"):
        load_task_file(spec)
    spec.write_text("- name: x\n  format: jsonl\n  path: d.jsonl\n  domain: legal\n")
    with pytest.raises(UserError, match="domain"):
        load_task_file(spec)
