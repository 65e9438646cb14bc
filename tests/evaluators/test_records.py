"""Typed item records and the one registry of task kinds: items.jsonl reads back into the kind's record type,
line for line the same bytes, and a kind nobody registered is an error that names the known ones."""

import pytest

from evaluators.items_file import ITEMS_NAME, item_line, read_items, record_from_json
from evaluators.loaders import LOADER_KINDS
from evaluators.records import (
    FailedRecord,
    GenerationFields,
    GenerationRecord,
    MCRecord,
    SkippedRecord,
    SummaryRecord,
)
from evaluators.runner import run_eval
from evaluators.task_kinds import TASK_KINDS, task_kind
from evaluators.tasks import Task, bind_data, resolve_tasks
from moeprune.errors import UserError
from tests.evaluators.endpoints import endpoint
from tests.evaluators.test_robust_runs import FlakyReply, write_items
from tests.evaluators.test_study_tasks import STUDY


def reply(request) -> str | int:
    """A reply every kind can read something from: letters for MC, a JSON answer for Med-HALT, text."""
    return FlakyReply()(request) if "flaky" in str(request.body) else '{"cop": "I do not know"} B'


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, eval_sets):
    """One run over every task kind, with failed, skipped and truncated items among the answers."""
    root = tmp_path_factory.mktemp("records")
    data = write_items(root / "mc.jsonl", long_question="Background " + "lorem ipsum dolor sit amet " * 150 + "?")
    tasks = [
        Task("mc_skip", "jsonl", data, overlong={"policy": "skip"}),
        Task("mc_cut", "jsonl", data, overlong={"policy": "truncate", "side": "left", "field": "question"}),
        Task("summaries", "summaries", eval_sets / "summaries.jsonl"),
        *bind_data(resolve_tasks(["medhalt_reasoning_fake", "medinst32_ncbi_disease"]), data_dir=STUDY),
    ]
    with endpoint(reply, max_model_len=64, context_chars=3000, logprob=lambda request: -0.4) as (url, _):
        run_eval(url, "m", tasks, root / "out", progress=False, base_endpoint=url, base_model="m", limit=6)
    return root / "out"


def test_every_line_reads_back_as_its_kinds_record_and_writes_the_same_bytes(run_dir):
    lines = (run_dir / ITEMS_NAME).read_text(encoding="utf-8").splitlines(keepends=True)
    records = read_items(run_dir)
    assert [item_line(record) for record in records] == lines
    types = {type(record) for record in records}
    assert types == {MCRecord, SummaryRecord, GenerationRecord, FailedRecord, SkippedRecord}
    assert any(isinstance(r, MCRecord) and r.truncated for r in records)
    assert all(r.task is not None for r in records)
    assert all(r.answered != isinstance(r, FailedRecord | SkippedRecord) for r in records)


def test_the_json_form_keeps_the_file_formats_keys_and_order():
    record = MCRecord(
        "q1",
        "answerable",
        "B",
        GenerationFields("B", True, "stop", attempts=2),
        "B",
        "letter",
        True,
        False,
        "correct",
        {"A": -3.0, "B": -0.1},
        {"A": 0.05, "B": 0.95},
        signals={"mean_logprob": -0.1},
        domain="biomedical",
        gate_domain="all",
    )
    assert list(record.to_json()) == [
        "id",
        "kind",
        "gold",
        "response",
        "has_logprobs",
        "finish_reason",
        "attempts",
        "choice",
        "parsed_as",
        "correct",
        "abstained",
        "label",
        "option_logprobs",
        "signals",
        "option_probs",
        "domain",
        "gate_domain",
    ]
    assert FailedRecord("q2", "HTTP 400").to_json() == {"id": "q2", "failed": "HTTP 400"}
    skipped = SkippedRecord("q3", "over-long", "too long", later={"task": "t"})
    assert skipped.to_json() == {"id": "q3", "skipped": "over-long", "error": "too long", "task": "t"}
    summary = SummaryRecord("s1", "the source", "ref", GenerationFields("sum", False, "stop"), signals={})
    assert "source" in summary.to_json() and '"source"' not in item_line(summary)  # the data file has it


def test_every_loader_kind_is_registered_and_an_unknown_kind_names_the_known_ones():
    assert set(LOADER_KINDS.values()) <= set(TASK_KINDS)
    with pytest.raises(
        UserError, match="unknown task kind 'ranking'; known kinds: multiple_choice, summarisation, generation"
    ):
        task_kind("ranking")
    with pytest.raises(UserError, match="unknown task kind 'ranking'"):
        record_from_json({"id": "x", "kind": "answerable"}, "ranking")
    assert isinstance(record_from_json({"id": "x", "failed": "HTTP 500"}, "ranking"), FailedRecord)


def test_a_line_of_a_task_the_card_does_not_name_is_an_error(run_dir, tmp_path):
    (tmp_path / "report_card.json").write_text((run_dir / "report_card.json").read_text())
    (tmp_path / ITEMS_NAME).write_text('{"id": "x", "failed": "HTTP 500", "task": "other"}\n')
    with pytest.raises(UserError, match="items.jsonl, line 1: task 'other' is not in report_card.json"):
        read_items(tmp_path)
