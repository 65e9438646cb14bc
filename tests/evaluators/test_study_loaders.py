"""The loaders of the study's data sets against fixtures in the published layouts
(tests/evaluators/fixtures/study/, laid out as a --data-dir), and the skip-or-abort rule for bad rows."""

import json
from pathlib import Path

import pytest

from evaluators.items import GenItem, MCItem, SummaryItem
from evaluators.loaders import load_items, skipped_summary
from moeprune.errors import UserError

STUDY = Path(__file__).parent / "fixtures" / "study"
SHARED_PUBMEDQA = Path(__file__).resolve().parents[3] / "shared" / "data" / "pubmedqa" / "ori_pqal_first50.json"


def test_pubmedqa_restricted_to_a_pmid_list_skips_what_it_cannot_use():
    items = load_items("pubmedqa", STUDY / "pubmedqa/ori_pqal.json", pmids=STUDY / "pubmedqa/test_ground_truth.json")
    assert [i.id for i in items] == ["21000001", "21000002", "21000003"]
    assert [i.answer for i in items] == ["A", "B", "C"]
    assert items[0].fields["question_text"] == "Does daily aspirin lower the risk of a second stroke?"
    assert items[0].fields["context"].startswith("We followed 400 patients")
    reasons = {s.reason for s in items.skipped}
    assert "PMID of the list is not in the data file" in reasons  # 29999999
    assert any("'perhaps' is not yes/no/maybe" in r for r in reasons)  # 21000004, with its line
    assert [s.line for s in items.skipped if "perhaps" in s.reason] == [37]
    with pytest.raises(UserError, match="line 37"):
        load_items(
            "pubmedqa", STUDY / "pubmedqa/ori_pqal.json", strict=True, pmids=STUDY / "pubmedqa/test_ground_truth.json"
        )


@pytest.mark.skipif(not SHARED_PUBMEDQA.exists(), reason="real PubMedQA sample not present on this machine")
def test_real_pubmedqa_sample_restricted_to_a_pmid_list(tmp_path):
    raw = json.loads(SHARED_PUBMEDQA.read_text())
    chosen = list(raw)[10:15]
    fold = tmp_path / "test_ground_truth.json"
    fold.write_text(json.dumps({pmid: raw[pmid]["final_decision"] for pmid in chosen}))
    items = load_items("pubmedqa", SHARED_PUBMEDQA, pmids=fold)
    assert [i.id for i in items] == chosen and not items.skipped
    letter = {"yes": "A", "no": "B", "maybe": "C"}
    assert [i.answer for i in items] == [letter[raw[p]["final_decision"]] for p in chosen]
    assert items[0].fields["question_text"] == raw[chosen[0]]["QUESTION"]


def test_medqa_four_options_in_both_published_layouts(tmp_path):
    items = load_items("medqa", STUDY / "medqa/US/4_options/phrases_no_exclude_test.jsonl", max_options=4)
    assert [i.answer for i in items] == ["C", "B"] and items[1].options["B"] == "Protamine sulfate"
    assert [(s.line, s.reason) for s in items.skipped] == [(3, "5 options where the task takes 4")]
    hf = tmp_path / "medqa_hf.jsonl"
    hf.write_text(
        json.dumps(
            {
                "id": "q1",
                "sent1": "Which drug reverses heparin?",
                "ending0": "Vitamin K",
                "ending1": "Protamine",
                "ending2": "Naloxone",
                "ending3": "Atropine",
                "label": 1,
            }
        )
        + "\n"
    )
    (item,) = load_items("medqa", hf)
    assert item.answer == "B" and item.options == {"A": "Vitamin K", "B": "Protamine", "C": "Naloxone", "D": "Atropine"}


def test_medmcqa_json_lines_in_a_json_file_skip_a_bad_cop():
    items = load_items("medmcqa", STUDY / "medmcqa/dev.json")
    assert [i.answer for i in items] == ["A", "D"]
    assert [s.line for s in items.skipped] == [3]


def test_mmlu_directory_of_subjects_or_chosen_subjects():
    every = load_items("mmlu", STUDY / "mmlu/data/test")
    assert len(every) == 13 and {i.meta["subject"] for i in every} >= {"anatomy", "high_school_geography"}
    assert [(s.line, s.reason) for s in every.skipped] == [(2, "answer is not A, B, C or D")]
    anatomy = load_items("mmlu", STUDY / "mmlu/data/test", subjects=["anatomy"])
    assert [i.answer for i in anatomy] == ["C", "A"] and not anatomy.skipped
    with pytest.raises(UserError, match="no file for subject.*astrology"):
        load_items("mmlu", STUDY / "mmlu/data/test", subjects=["astrology"])


def test_medhalt_reasoning_as_the_studys_json_answer_items():
    nota = load_items("medhalt_reasoning", STUDY / "medhalt/reasoning_nota.csv", test="nota")
    assert isinstance(nota[0], GenItem) and nota[0].target == "None of the above"
    assert json.loads(nota[0].fields["input"]) == {
        "Question": "Which nerve supplies the deltoid muscle?",
        "Options": {"0": "Radial nerve", "1": "Ulnar nerve", "2": "Median nerve", "3": "None of the above"},
    }
    fct = load_items("medhalt_reasoning", STUDY / "medhalt/reasoning_FCT.csv", test="fct")
    shown = json.loads(fct[0].fields["input"])["Options"]
    assert shown["correct answer"] == "Vitamin K" and fct[0].target == "Protamine sulfate"
    assert [s.line for s in fct.skipped] == [4]  # its student's answer is none of the options
    fake = load_items("medhalt_reasoning", STUDY / "medhalt/reasoning_fake.csv", test="fake")
    assert {i.target for i in fake} == {"I do not know"} and {i.kind for i in fake} == {"fake"}


def test_medhalt_fake_as_multiple_choice_skips_an_abstain_option_worded_unknown_ways():
    fake = load_items("medhalt_fake", STUDY / "medhalt/reasoning_fake.csv")
    assert [i.answer for i in fake] == ["D", "C"] and all(isinstance(i, MCItem) for i in fake)
    (skip,) = fake.skipped
    assert skip.line == 4 and "abstain option" in skip.reason
    fct = load_items("medhalt_fct", STUDY / "medhalt/reasoning_FCT.csv")  # student answer from the options
    assert [i.answer for i in fct] == ["B", "A"]


@pytest.mark.parametrize(
    "test, file, given, target",
    [
        (
            "pmid2title",
            "IR_pmid2title.csv",
            {"Pmid": "11237011"},
            "Initial sequencing and analysis of the human genome",
        ),
        ("abs2pub", "IR_abstract2pubmedlink.csv", None, "https://ncbi.nlm.nih.gov/pubmed/11237011"),
        (
            "url2title",
            "IR_pubmedlink2title.csv",
            {"url": "https://ncbi.nlm.nih.gov/pubmed/11237011"},
            "Initial sequencing and analysis of the human genome",
        ),
        (
            "title2pub",
            "IR_title2pubmedlink.csv",
            {"paper_title": "Initial sequencing and analysis of the human genome"},
            "https://ncbi.nlm.nih.gov/pubmed/11237011",
        ),
    ],
)
def test_medhalt_retrieval_tests(test, file, given, target):
    items = load_items("medhalt_ir", STUDY / "medhalt" / file, test=test)
    assert items[0].target == target and len(items) == 2
    if given:  # the PMID written as a float by pandas reads back as the integer PMID
        assert json.loads(items[0].fields["input"]) == given
    assert [s.line for s in items.skipped] == [4]


def test_medinst32_records_with_instruction_input_output():
    items = load_items("medinst", STUDY / "medinst32/NCBI-disease.jsonl")
    assert items[0].fields["instruction"].startswith("Tag each token") and items[0].target.startswith("Breast [B]")
    assert [(s.line, s.reason) for s in items.skipped] == [(3, "missing field(s) output")]


def test_summarisation_sets_in_their_published_layouts():
    rct = load_items("rct", STUDY / "mslr/RCT", split="test")
    assert [i.id for i in rct] == ["CD001", "CD002"] and isinstance(rct[0], SummaryItem)
    assert "PMID: 11111111" in rct[0].source and rct[0].reference.startswith("Daily aspirin")
    assert [s.reason for s in rct.skipped] == ["review has not exactly one abstract and one target"]
    news = load_items("multi_news_plus", STUDY / "multi_news_plus/cleansed_data", split="test")
    assert [i.id for i in news] == ["0", "2"] and "ten minutes" in news[0].source
    science = load_items("multi_xscience", STUDY / "multi_xscience/test.json")
    assert "@cite_1: Routing frequency" in science[0].source and science[1].reference.startswith("Hallucination")


def test_a_file_of_bad_rows_only_is_an_error_with_the_reasons(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": 1}\n{"question": 2}\nnot json\n')
    with pytest.raises(
        UserError,
        match=r"holds no items: every row was skipped: missing field\(s\) "
        r"options, answer \(2x\); not valid JSON",
    ):
        load_items("jsonl", path)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"question": "q", "options": ["a", "b"], "answer": "A"}\nnot json\n')
    loaded = load_items("jsonl", mixed)
    assert len(loaded) == 1
    assert skipped_summary(loaded.skipped) == {"not valid JSON (Expecting value)": {"count": 1, "lines": [2]}}
