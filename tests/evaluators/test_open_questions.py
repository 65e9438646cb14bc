"""Free-text answers to plain questions are labelled, certified with the rest, and told apart in the card."""

import json
import random

import pytest

from evaluators.answer_forms import CHOICE, FREE_TEXT, answer_form
from evaluators.answers import score_generation
from evaluators.loaders import load_items
from evaluators.reliability_card import reliability_section
from evaluators.tasks import SUITES, shipped_tasks
from moeprune.errors import UserError
from moeprune.formats.report_card import DomainReliability


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_open_loader_reads_questions_and_references_and_skips_what_it_cannot_read(tmp_path):
    path = write_lines(
        tmp_path / "open.jsonl",
        [
            {"id": "a", "question": "Which organ does Xol affect?", "answer": "liver", "domain": "biomedical"},
            {"id": "b", "question": "Which sport does Pelveez play?", "answer": "I don't know", "kind": "fake"},
            {"id": "c", "question": "Q?", "answer": "x", "kind": "nota"},
            {"id": "d", "question": "Q?", "answer": ""},
            {"id": "e", "question": 3, "answer": "x"},
        ],
    )
    items = load_items("open_jsonl", path)
    assert [(i.id, i.fields, i.target, i.kind) for i in items] == [
        ("a", {"question": "Which organ does Xol affect?"}, "liver", "answerable"),
        ("b", {"question": "Which sport does Pelveez play?"}, "I don't know", "fake"),
    ]
    reasons = " ".join(s.reason for s in items.skipped)
    assert "kind 'nota'" in reasons and "answer" in reasons and "question must be" in reasons
    with pytest.raises(UserError, match="line 3"):
        load_items("open_jsonl", path, strict=True)


@pytest.mark.parametrize(
    ("reply", "kind", "label"),
    [
        ("antifungal", "answerable", "correct"),
        (" Antifungal. ", "answerable", "correct"),
        ("diuretic", "answerable", "wrong"),
        ("Ias", "answerable", "wrong"),  # a garbled reply asserts something wrong
        ("I don't know", "answerable", "abstained"),
        ("I don't know", "fake", "correct"),
        ("antifungal", "fake", "wrong"),
    ],
)
def test_a_free_text_answer_is_labelled_against_its_reference(reply, kind, label):
    task = shipped_tasks()["bio_open"]
    item = next(i for i in task.load() if i.kind == kind)
    target = item.target if kind == "fake" else "antifungal"
    scored = score_generation(task, type(item)(item.id, item.fields, target, kind=kind), reply)
    assert scored.label == label


def test_the_shipped_open_sets_ask_plain_questions_in_both_domains_and_are_in_the_reliability_suite():
    tasks = shipped_tasks()
    assert {"bio_open", "general_open"} <= set(SUITES["reliability"])
    for name, domain in (("bio_open", "biomedical"), ("general_open", "general")):
        task = tasks[name]
        assert task.kind == "generation" and task.domain == domain and "exact_match" in task.metric_names
        items = task.load()
        assert {i.kind for i in items} == {"answerable", "fake"} and len(items) == 210
        assert len({i.id for i in items}) == len(items)
        assert all("\nA." not in i.fields["question"] for i in items)  # no options: a plain question


def records_with_forms(n=1200, seed=3):
    """Choice answers whose signal separates well, free-text answers whose errors hide among confident ones."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        free = i % 3 == 0
        wrong = rng.random() < (0.3 if free else 0.1)
        if free:
            logprob = rng.gauss(-0.2, 0.2)  # wrong or right, as confident: the signal cannot tell
        else:
            logprob = rng.gauss(-2.5 if wrong else -0.2, 0.4)
        record = {
            "task": "open" if free else "mc",
            "id": f"i{i}",
            "label": "wrong" if wrong else "correct",
            "abstained": False,
            "gate_domain": "all",
            "signals": {"mean_logprob": logprob},
        }
        if free:
            record["target"] = "value"
        out.append(record)
    return out


def test_each_cell_reports_how_each_answer_form_fared_among_its_unflagged_answers():
    records = records_with_forms()
    assert answer_form(records[0]) == FREE_TEXT and answer_form(records[1]) == CHOICE
    section, per_record = reliability_section(records, alpha=0.15, delta=0.05, resamples=100)
    cell = DomainReliability.model_validate(section["domains"]["all"])
    assert cell.certificate.status == "certified"
    assert set(cell.by_form) == {CHOICE, FREE_TEXT}
    assert sum(f.n for f in cell.by_form.values()) == cell.n
    assert sum(f.n_wrong for f in cell.by_form.values()) == cell.n_wrong
    certifying = [r for r in records if per_record[f"{r['task']}/{r['id']}"]["split"] == "certify"]
    for form, figures in cell.by_form.items():
        held = [r for r in certifying if answer_form(r) == form]
        served = [r for r in held if not per_record[f"{r['task']}/{r['id']}"]["above_risk"]]  # certified: no flag
        assert figures.n_certifying == len(held) and figures.n_unflagged == len(served)
        assert figures.errors_unflagged == sum(r["label"] == "wrong" for r in served)
    # the pooled certificate can hold while the free-text answers it lets through are often wrong:
    # exactly what these figures exist to show
    free = cell.by_form[FREE_TEXT]
    assert free.realised_error > 0.2 and free.error_upper > free.realised_error
    assert cell.by_form[CHOICE].realised_error < 0.05


def test_an_uncertified_cell_reports_no_unflagged_answers_of_any_form():
    records = [dict(r, label="wrong") for r in records_with_forms(60)]  # one class only: nothing can be fitted
    section, _ = reliability_section(records, alpha=0.05, delta=0.05, resamples=50)
    cell = section["domains"]["all"]
    assert cell["certificate"]["status"] == "uncertified"
    assert {form: f["n_unflagged"] for form, f in cell["by_form"].items()} == {CHOICE: 0, FREE_TEXT: 0}
