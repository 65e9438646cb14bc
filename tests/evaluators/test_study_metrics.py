"""The study's generation metrics and the suite averages against values worked out by hand (in comments)."""

import pytest

from evaluators.metrics.averages import macro_average, micro_average
from evaluators.metrics.generation import (
    bio_f1,
    bracketed_entities,
    classification_macro_f1,
    entity_f1,
    exact_match,
    mse,
    multilabel_f1,
    rouge_l_stemmed,
    word_f1,
)
from evaluators.metrics.text import rouge_l
from evaluators.task_metrics import generation_metrics


def test_rouge_l_stems_words_longer_than_three_letters():
    # pred: the cat(s) were run(ning) fast; ref: a cat run(s) quickli -> LCS [cat, run] = 2
    # P = 2/5, R = 2/4 -> F = 2 * 0.4 * 0.5 / 0.9 = 0.4444; unstemmed there is no common word at all
    assert rouge_l_stemmed("the cats were running fast", "a cat runs quickly") == pytest.approx(4 / 9)
    assert rouge_l("the cats were running fast", "a cat runs quickly") == 0.0
    assert rouge_l_stemmed("Fever, cough.", "fever cough") == pytest.approx(1.0)


def test_word_f1_and_exact_match_normalise_case_punctuation_and_articles():
    # "patient has fever" vs "patient fever": overlap 2, P = 2/3, R = 1 -> F1 = 0.8
    assert word_f1("The patient has a fever.", "patient fever") == pytest.approx(0.8)
    assert word_f1("", "") == 1.0 and word_f1("x", "") == 0.0
    assert exact_match("The Fever!", "fever") and not exact_match("fevers", "fever")


def test_entity_f1_over_bracketed_spans_as_multisets():
    # pred [fever, cough, fever], ref [fever, rash]: tp 1, P = 1/3, R = 1/2 -> F1 = 2/6 / (5/6) = 0.4
    assert entity_f1("[fever] and [cough] [fever]", "[Fever] [rash]") == pytest.approx(0.4)
    assert entity_f1("no entities", "none here") == 1.0  # both empty agree (the study scored 0)
    assert entity_f1("nothing", "[fever]") == 0.0
    # nested brackets stay inside the entity, a stray closing bracket is ignored
    assert bracketed_entities("[IL-2 [receptor]] x] [TNF]") == ["il2 receptor", "tnf"]


def test_multilabel_f1_over_comma_separated_labels():
    # pred {angiogenesis, invasion}, ref {invasion, metastasis, angiogenesis}: P = 1, R = 2/3 -> 0.8
    assert multilabel_f1("angiogenesis, Invasion", "invasion, metastasis, angiogenesis") == pytest.approx(0.8)


def test_macro_f1_averages_the_reference_labels():
    # yes: tp 1 fp 1 fn 1 -> 2/4; no: tp 1 fp 1 fn 0 -> 2/3; maybe: tp 0 -> 0; mean = 0.3889
    value = classification_macro_f1(["Yes.", "no", "No", "yes"], ["yes", "yes", "no", "maybe"])
    assert value == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert classification_macro_f1([], []) is None


def test_bio_f1_pads_and_cuts_predictions_to_the_reference_length():
    # item 1: ref [B, I, O], pred [B, O] -> [B, O, N]; item 2: ref [O, O], pred [O, O, B] -> [O, O]
    # gold B I O O O vs pred B O N O O: B 1.0; I 0.0; O tp 2 fp 1 fn 1 -> 4/6; macro = 0.5556
    value = bio_f1(["A [B] b [O]", "[O] [O] [B]"], ["A [B] b [I] c [O]", "[O] [O]"])
    assert value == pytest.approx((1 + 0 + 2 / 3) / 3)


def test_mse_of_biosses_scores_with_the_studys_penalty_for_unreadable_ones():
    # (4-4)^2 = 0; (2-0)^2 = 4; "3 or 4" holds two numbers -> 25; 7 is outside 0-5 -> 25; total 54 / 4
    assert mse(["4", "score: 2", "3 or 4", "7"], ["4", "0", "3", "5"]) == pytest.approx(13.5)


def test_macro_and_micro_averages_across_a_suite():
    # macro: (0.5 + 1.0) / 2; micro: (0.5 * 10 + 1.0 * 30) / 40 = 0.875; a missing value counts nowhere
    assert macro_average([0.5, 1.0, None]) == pytest.approx(0.75)
    assert micro_average([0.5, 1.0, None], [10, 30, 5]) == pytest.approx(0.875)
    assert macro_average([None]) is None and micro_average([], []) is None


def test_generation_metrics_compute_what_the_task_names():
    records = [
        {
            "response": "yes, because...",
            "answer": "yes",
            "target": "yes",
            "correct": True,
            "abstained": False,
            "parsed_as": "answer",
        },
        {
            "response": "no",
            "answer": "no",
            "target": "yes",
            "correct": False,
            "abstained": False,
            "parsed_as": "answer",
        },
        {"response": "", "answer": "", "target": "no", "correct": False, "abstained": False, "parsed_as": "unparsed"},
    ]
    metrics = generation_metrics(
        records, 0, ["exact_match", "macro_f1", "word_f1", "unparsed_rate", "medhalt_score", "hallucination_rate"]
    )
    assert metrics["exact_match"]["value"] == pytest.approx(1 / 3)
    # labels yes (tp 1, fn 1, fp 0 -> 2/3) and no (tp 0 -> 0): macro 1/3
    assert metrics["macro_f1"]["value"] == pytest.approx(1 / 3)
    assert metrics["word_f1"]["value"] == pytest.approx(1 / 3)
    assert metrics["unparsed_rate"]["value"] == pytest.approx(1 / 3)
    assert metrics["medhalt_score"]["value"] == pytest.approx((1 - 0.25 - 0.25) / 3)
    assert metrics["hallucination_rate"]["value"] == pytest.approx(2 / 3)
    assert set(generation_metrics(records)) == {"rouge_l_stemmed", "word_f1"}  # the study's default pair
    free_text = generation_metrics([{"response": "x", "target": "y"}], 0, ["exact_match"])
    assert free_text["exact_match"]["value"] is None and "right or wrong" in free_text["exact_match"]["unavailable"]
