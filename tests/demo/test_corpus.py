"""The demo corpus is deterministic, and what it holds out never appears in training."""

from __future__ import annotations

import json
from pathlib import Path

from demo.corpus import build_corpus, fresh_fakes
from demo.examples import training_examples
from demo.facts import DOMAINS, I_DONT_KNOW, NONE_OF_THE_ABOVE
from demo.sets import evaluation_items, set_files
from evaluators.prompts import parse_answer

SETS_DIR = Path(__file__).resolve().parents[2] / "evaluators" / "sets"


def training_text(corpus) -> str:
    return "\n".join(e.context + e.target for epoch in range(3) for e in training_examples(corpus, epoch))


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not():
    assert set_files(build_corpus(0)) == set_files(build_corpus(0))
    first = [e.context + e.target for e in training_examples(build_corpus(0), 0)]
    again = [e.context + e.target for e in training_examples(build_corpus(0), 0)]
    assert first == again
    assert set_files(build_corpus(1)) != set_files(build_corpus(0))


def test_committed_sets_are_what_the_generator_writes():
    from demo.open_sets import open_set_files
    from demo.reliability_sets import reliability_set_files

    expected = set_files(build_corpus(0))
    labelled = {**reliability_set_files(build_corpus(0)), **open_set_files(build_corpus(0))}
    assert sorted(p.name for p in SETS_DIR.glob("*.jsonl")) == sorted({**expected, **labelled})
    for name, text in labelled.items():
        assert (SETS_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale: regenerate it"
    for name, text in expected.items():
        assert (SETS_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale: regenerate it"


def test_held_out_questions_and_fake_entities_never_appear_in_training():
    corpus = build_corpus(0)
    text = training_text(corpus)
    for domain in DOMAINS:
        for kind in ("qa", "nota", "fake"):
            for item in evaluation_items(corpus, domain, kind):
                assert item.question not in text, item.question
        for fake in corpus.fakes_of(domain, held_out=True):
            assert fake.entity not in text
    assert not {f.entity for f in corpus.heldout_fakes} & corpus.trained_entities()


def test_fresh_made_up_entities_are_new_every_epoch_and_never_a_known_or_held_out_name():
    corpus = build_corpus(0)
    first, second = ({f.entity for f in fresh_fakes(corpus, epoch)} for epoch in (0, 1))
    assert first == {f.entity for f in fresh_fakes(build_corpus(0), 0)}  # deterministic
    assert len(first) == len(fresh_fakes(corpus, 0))  # unique within an epoch
    assert len(first & second) < len(first) // 10  # mostly new names each epoch
    assert not (first | second) & corpus.all_entities()


def test_every_held_out_template_is_trained_on_other_facts():
    corpus = build_corpus(0)
    for fact in corpus.facts:
        for template in fact.held_out_templates():
            assert any(
                template in other.trained_templates() for other in corpus.facts if other.relation == fact.relation
            )


def test_sets_have_the_contract_sizes_and_answers():
    for name in ("biomedical", "general"):
        assert sum(1 for _ in (SETS_DIR / f"{name}_qa.jsonl").open()) >= 150
        for kind, correct in (("fake", I_DONT_KNOW), ("nota", NONE_OF_THE_ABOVE)):
            items = [json.loads(line) for line in (SETS_DIR / f"{name}_{kind}.jsonl").open()]
            assert len(items) >= 60
            assert all(item["options"][item["answer"]] == correct for item in items)


def test_the_correct_option_text_parses_to_the_correct_letter():
    # The model answers with the option's text; the evaluators' parser must map it back.
    corpus = build_corpus(0)
    for domain in DOMAINS:
        for kind in ("qa", "nota", "fake"):
            for item in evaluation_items(corpus, domain, kind):
                assert parse_answer(item.answer_text, item.options).choice == item.answer


def test_training_shows_known_facts_beside_abstain_options_more_often_than_evaluation():
    # the measured cure for over-abstaining on known facts (docs/demo.md); evaluation keeps its own mix
    corpus = build_corpus(0)
    abstain = (I_DONT_KNOW, NONE_OF_THE_ABOVE)
    answered = [
        e
        for e in training_examples(corpus, 0)
        if "Options:" in e.context and e.target.split("<|end|>")[0] not in abstain
    ]
    trained_share = sum(any(f". {a}" in e.context for a in abstain) for e in answered) / len(answered)
    items = [i for d in DOMAINS for i in evaluation_items(corpus, d, "qa")]
    evaluated_share = sum(any(v in abstain for v in i.options.values()) for i in items) / len(items)
    assert trained_share > evaluated_share + 0.08, (trained_share, evaluated_share)


def test_shipped_reliability_sets_are_the_generated_ones_and_new_to_the_utility_sets():
    from demo.reliability_sets import reliability_set_files

    corpus = build_corpus(0)
    files = reliability_set_files(corpus)
    for name, text in files.items():
        assert (SETS_DIR / name).read_text(encoding="utf-8") == text
    utility = {
        json.loads(line)["question"] + json.dumps(json.loads(line)["options"], sort_keys=True)
        for text in set_files(corpus).values()
        for line in text.splitlines()
    }
    added = [json.loads(line) for text in files.values() for line in text.splitlines()]
    keys = {r["question"] + json.dumps(r["options"], sort_keys=True) for r in added}
    assert len(keys) == len(added) and not keys & utility
    for domain in ("biomedical", "general"):  # with the utility sets, >= 600 labelled answers per domain
        assert sum(r["domain"] == domain for r in added) + 270 >= 600


def test_reliability_sets_do_not_change_the_demo_model_key():
    from demo.model_config import DemoModelConfig
    from demo.recipe import model_key

    assert model_key(build_corpus(0), DemoModelConfig()) == "7fed13614a5cbf33"


def test_reliability_questions_never_appear_in_training():
    from demo.reliability_sets import reliability_records

    corpus = build_corpus(0)
    text = training_text(corpus)
    for domain in DOMAINS:
        for record in reliability_records(corpus, domain):
            assert record["question"] not in text, record["question"]


def test_open_questions_are_held_out_and_their_made_up_entities_never_trained():
    from demo.open_sets import open_records

    corpus = build_corpus(0)
    text = training_text(corpus)
    for domain in DOMAINS:
        records = open_records(corpus, domain)
        assert len(records) == 210 and len({r["question"] for r in records}) == 210
        for record in records:
            assert record["question"] not in text, record["question"]
        fakes = {f.entity for f in corpus.fakes_of(domain, held_out=True)}
        assert {r["answer"] for r in records if r["kind"] == "fake"} == {"I don't know"}
        assert all(any(e in r["question"] for e in fakes) for r in records if r["kind"] == "fake")
