"""Every loader against a small fixture written in its published layout."""

import json
from pathlib import Path

import pytest

from evaluators.items import MCItem, SummaryItem
from evaluators.loaders import LOADERS, load_items
from moeprune.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_PUBMEDQA = Path(__file__).resolve().parents[3] / "shared" / "data" / "pubmedqa" / "ori_pqal_first50.json"


def test_pubmedqa_yes_no_maybe_with_contexts():
    items = load_items("pubmedqa", FIXTURES / "pubmedqa_ori_pqal.json")
    assert [i.answer for i in items] == ["A", "B", "C"]
    assert items[0].options == {"A": "yes", "B": "no", "C": "maybe"}
    assert items[0].id == "10000001"
    assert "Resting heart rate fell" in items[0].question and items[0].question.endswith("adults?")


@pytest.mark.skipif(not SHARED_PUBMEDQA.exists(), reason="real PubMedQA sample not present on this machine")
def test_pubmedqa_real_examples_load():
    items = load_items("pubmedqa", SHARED_PUBMEDQA)
    raw = json.loads(SHARED_PUBMEDQA.read_text())
    assert len(items) == len(raw) == 50
    letter = {"yes": "A", "no": "B", "maybe": "C"}
    assert [i.answer for i in items] == [letter[r["final_decision"]] for r in raw.values()]


def test_medqa_options_and_answer_idx():
    items = load_items("medqa", FIXTURES / "medqa.jsonl")
    assert items[0].answer == "C" and items[0].options["C"] == "Vitamin C"
    assert list(items[1].options) == ["A", "B", "C", "D", "E"] and items[1].answer == "B"


def test_medmcqa_one_based_cop():
    items = load_items("medmcqa", FIXTURES / "medmcqa.jsonl")
    assert [i.answer for i in items] == ["A", "D"]
    assert items[1].options["D"] == "Femur" and items[0].id == "m1"


def test_medmcqa_zero_based_export(tmp_path):
    path = tmp_path / "m.jsonl"
    rows = [{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": c} for c in (0, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [i.answer for i in load_items("medmcqa", path)] == ["A", "D"]


def test_mmlu_headerless_csv():
    items = load_items("mmlu", FIXTURES / "mmlu_anatomy_test.csv")
    assert [i.answer for i in items] == ["A", "C"]
    assert items[1].options == {"A": "Two", "B": "Three", "C": "Four", "D": "Five"}


def test_medhalt_fct_is_a_yes_no_item_about_the_proposed_answer():
    items = load_items("medhalt_fct", FIXTURES / "medhalt_reasoning_FCT.csv")
    assert [i.answer for i in items] == ["B", "A"]  # proposed Heparin is wrong; proposed Kidney is right
    assert items[0].options == {"A": "Yes", "B": "No"} and items[0].kind == "fct"
    assert "Proposed answer: Heparin" in items[0].question and "(0) Vitamin K" in items[0].question


def test_medhalt_nota_and_fake():
    nota = load_items("medhalt_nota", FIXTURES / "medhalt_reasoning_nota.csv")
    assert nota[0].answer == "D" and nota[0].options["D"] == "None of the above" and nota[0].kind == "nota"
    fake = load_items("medhalt_fake", FIXTURES / "medhalt_reasoning_fake.csv")
    assert [i.answer for i in fake] == ["D", "C"]  # by correct_index; by the "I don't know" option
    assert all(i.kind == "fake" for i in fake)


def test_medhalt_json_export(tmp_path):
    path = tmp_path / "nota.json"
    path.write_text(
        json.dumps([{"id": "x", "question": "q", "options": json.dumps({"0": "a", "1": "None"}), "correct_index": 1}])
    )
    assert load_items("medhalt_nota", path)[0].answer == "B"


def test_generic_jsonl_list_or_dict_options_and_any_answer_form():
    items = load_items("jsonl", FIXTURES / "generic.jsonl")
    assert items[0] == MCItem(
        "generic-1", "What is the capital of France?", {"A": "Paris", "B": "Rome", "C": "Madrid"}, "A"
    )
    assert items[1].answer == "B" and items[1].domain == "general" and items[1].id == "g2"


def test_summaries_jsonl():
    items = load_items("summaries", FIXTURES / "summaries.jsonl")
    assert items == [SummaryItem("s1", items[0].source, items[0].reference)]
    assert items[0].source.startswith("Metformin lowers")


def test_malformed_jsonl_names_the_line_when_strict():
    with pytest.raises(UserError, match=r"malformed\.jsonl, line 3"):
        load_items("jsonl", FIXTURES / "malformed.jsonl", strict=True)


@pytest.mark.parametrize(
    "fmt, content, line",
    [
        ("jsonl", '{"question": "q", "options": ["a"], "answer": "Z"}\n', 1),
        ("jsonl", '\n{"question": "q", "answer": "A"}\n', 2),
        ("medqa", '{"question": "q", "options": {"A": "x"}, "answer_idx": "A"}\n[1, 2]\n', 2),
        ("medmcqa", '{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 9}\n', 1),
        ("mmlu", "q,a,b,c,d,A\nq2,a,b,c,d\n", 2),
        ("summaries", '{"source": "s"}\n', 1),
    ],
)
def test_malformed_rows_name_their_line_when_strict(tmp_path, fmt, content, line):
    path = tmp_path / ("data.csv" if fmt == "mmlu" else "data.jsonl")
    path.write_text(content)
    with pytest.raises(UserError, match=rf"line {line}\b"):
        load_items(fmt, path, strict=True)


def test_malformed_medhalt_csv_and_pubmedqa_json(tmp_path):
    bad = tmp_path / "fct.csv"
    bad.write_text("question,options,correct_index,student_index\nq,\"{'0': 'a'}\",0,0\nq,not a dict,0,0\n")
    with pytest.raises(UserError, match=r"line 3"):
        load_items("medhalt_fct", bad, strict=True)
    wrong = tmp_path / "pq_wrong.json"
    wrong.write_text(
        '{\n "1": {"QUESTION": "q", "final_decision": "yes"},\n "2": {"QUESTION": "q", "final_decision": "perhaps"}\n}'
    )
    with pytest.raises(UserError, match=r"line 3: entry '2'"):
        load_items("pubmedqa", wrong, strict=True)
    broken = tmp_path / "pq.json"
    broken.write_text('{\n "1": {"QUESTION": "q",\n')
    with pytest.raises(UserError, match=r"line \d"):
        load_items("pubmedqa", broken)


def test_unknown_format_and_missing_file_list_what_to_do(tmp_path):
    with pytest.raises(UserError, match="valid formats: .*medqa"):
        load_items("nope", tmp_path / "x")
    with pytest.raises(UserError, match="does not exist"):
        load_items("jsonl", tmp_path / "missing.jsonl")
    assert set(LOADERS) >= {
        "pubmedqa",
        "medqa",
        "medmcqa",
        "mmlu",
        "medhalt_fct",
        "medhalt_nota",
        "medhalt_fake",
        "jsonl",
        "summaries",
    }
