"""Every labelled answer is correct, wrong, unparsed or abstained; abstaining is correct only where it is the gold."""

from evaluators.answers import mc_label, score_generation
from evaluators.items import GenItem, MCItem
from evaluators.labels import asserts_something, label_of
from evaluators.prompts import parse_answer
from evaluators.tasks import study_tasks

ANSWERABLE = MCItem(
    "q", "Which organ produces insulin?", {"A": "Pancreas", "B": "Liver", "C": "Lung", "D": "I don't know"}, "A"
)
FAKE = MCItem(
    "f",
    "Which drug class does Ceflutide belong to?",
    {"A": "antibiotic", "B": "sedative", "C": "diuretic", "D": "I don't know"},
    "D",
    kind="fake",
)
NO_ABSTAIN_OPTION = MCItem("n", "Capital of Peru?", {"A": "Lima", "B": "Oslo"}, "A")


def label(text, item):
    return mc_label(parse_answer(text, item.options), item)


def test_multiple_choice_labels():
    assert label("A", ANSWERABLE) == "correct"
    assert label("Pancreas", ANSWERABLE) == "correct"
    assert label("B", ANSWERABLE) == "wrong"
    assert label("the spleen, probably", ANSWERABLE) == "unparsed"
    assert label("D", ANSWERABLE) == "abstained"  # declined an answerable question: not an error
    assert label("I don't know.", ANSWERABLE) == "abstained"
    assert label("I don't know", NO_ABSTAIN_OPTION) == "abstained"  # a refusal without an option to map to
    assert label("D", FAKE) == "correct"  # abstaining is the gold answer on a made-up entity
    assert label("No such drug exists.", FAKE) == "correct"
    assert label("A", FAKE) == "wrong"


def test_exact_match_and_made_up_generation_labels():
    fake = study_tasks()["medhalt_reasoning_fake"]
    made_up = GenItem("k", {"input": "{}"}, "I do not know", kind="fake")
    assert score_generation(fake, made_up, '{"cop": "I do not know"}').label == "correct"
    assert score_generation(fake, made_up, '{"cop": "Lunase"}').label == "wrong"
    assert score_generation(fake, made_up, "Lunase, I think").label == "unparsed"
    ir = study_tasks()["medhalt_ir_pmid2title"]
    real = GenItem("i", {"input": "{}"}, "Initial sequencing and analysis of the human genome")
    assert score_generation(ir, real, '{"paper_title": "Unknown"}').label == "abstained"
    assert (
        score_generation(ir, real, '{"paper_title": "Initial sequencing and analysis of the human genome"}').label
        == "correct"
    )
    medinst = study_tasks()["medinst32_ncbi_disease"]
    assert "label" not in score_generation(medinst, GenItem("m", {"input": "x"}, "[B]"), "[B]").to_json()


def test_the_reliability_population_leaves_every_abstention_out():
    assert asserts_something({"label": "wrong", "abstained": False})
    assert asserts_something({"label": "unparsed", "abstained": False})
    assert not asserts_something({"label": "abstained", "abstained": True})
    # a right refusal of a made-up entity is correct, yet the gateway cannot tell it from a wrong refusal
    assert not asserts_something({"label": "correct", "abstained": True})
    assert not asserts_something({"kind": "summary"})
    # records written before labels existed read the same
    assert label_of({"correct": False, "abstained": True}) == "abstained"
    assert label_of({"correct": False, "abstained": False, "parsed_as": "unparsed"}) == "unparsed"
