"""The study's tasks as shipped data files: every file validates and binds to data in the published layouts,
the schema refuses what it does not know, prompts render with their worked examples, and answers are read
as the task file says (never by prefix)."""

import json
from pathlib import Path

import pytest

from evaluators.answers import extract, json_field, parse_task_answer, score_generation
from evaluators.items import GenItem, MCItem
from evaluators.task_prompts import render
from evaluators.tasks import (
    SUITES,
    Task,
    bind_data,
    load_task_file,
    parse_data_bindings,
    resolve_tasks,
    study_tasks,
)
from moeprune.errors import UserError

STUDY = Path(__file__).parent / "fixtures" / "study"


def test_every_study_task_file_binds_to_the_published_layouts_and_loads():
    tasks = bind_data(resolve_tasks(["study-all"]), data_dir=STUDY)
    assert len(tasks) == len(study_tasks()) == 52
    names = {t.name for t in tasks}
    assert sum(n.startswith("medinst32_") for n in names) == 32
    assert {
        "multimedqa_pubmedqa",
        "multimedqa_medqa",
        "multimedqa_medmcqa",
        "mmlu",
        "medhalt_ir_abs2pub",
        "medhalt_reasoning_fake",
        "summaries_rct",
        "summaries_multi_news_plus",
    } <= names
    for task in tasks:
        items = task.load()
        assert items, task.name
        render(task, items[0], [])  # every template names only fields its items have
    kinds = {t.name: t.kind for t in tasks}
    assert kinds["medinst32_biosses"] == "generation" and kinds["summaries_rct"] == "summarisation"
    assert kinds["multimedqa_pubmedqa"] == "multiple_choice"


def test_study_suites_are_files_beside_the_project_ones():
    assert set(SUITES) >= {
        "biomedical",
        "general",
        "all",
        "study-biomedical",
        "study-general",
        "study-summaries",
        "study-all",
    }
    assert SUITES["study-all"] == SUITES["study-biomedical"] + SUITES["study-general"] + SUITES["study-summaries"]
    assert SUITES["all"] == SUITES["biomedical"] + SUITES["general"]


def test_the_study_settings_travel_in_the_task_files():
    tasks = study_tasks()
    pubmedqa, medhalt, medinst, rct = (
        tasks["multimedqa_pubmedqa"],
        tasks["medhalt_reasoning_nota"],
        tasks["medinst32_biosses"],
        tasks["summaries_rct"],
    )
    assert (pubmedqa.decoding.temperature, pubmedqa.decoding.max_tokens) == (0.0, 128)
    assert pubmedqa.answer.extract == "word" and pubmedqa.overlong.field == "context"
    assert (medhalt.decoding.temperature, medhalt.decoding.top_p) == (0.2, 0.95)
    assert len(medhalt.prompt.few_shot.examples) == 2 and medhalt.answer.json_keys == ("cop",)
    assert medinst.metric_names == ("rouge_l_stemmed", "word_f1", "mse") and medinst.decoding.max_tokens == 1024
    assert rct.decoding.temperature == 0.7 and rct.decoding.retries_on_empty > 0


def test_data_bindings_by_key_override_the_data_dir_and_unknown_keys_are_errors(tmp_path):
    (task,) = resolve_tasks(["multimedqa_medmcqa"])
    with pytest.raises(UserError, match="no data file given for medmcqa.*--data KEY=PATH"):
        task.load()
    copy = tmp_path / "mine.json"
    copy.write_text((STUDY / "medmcqa/dev.json").read_text())
    (bound,) = bind_data([task], parse_data_bindings([f"medmcqa={copy}"]), data_dir="/nowhere")
    assert bound.path == copy and len(bound.load()) == 2
    with pytest.raises(UserError, match="no chosen task reads; keys: medmcqa"):
        bind_data([task], parse_data_bindings([f"medqa={copy}"]))
    with pytest.raises(UserError, match="not KEY=PATH"):
        parse_data_bindings(["medmcqa"])
    (strict,) = bind_data([task], {"medmcqa": STUDY / "medmcqa/dev.json"}, strict=True)
    with pytest.raises(UserError, match="dev.json, line 3"):
        strict.load()


def _write(tmp_path, text):
    path = tmp_path / "task.yaml"
    path.write_text(text)
    return path


BASE = "name: t\ndata: {loader: jsonl, path: {path: d.jsonl}}\n"


@pytest.mark.parametrize(
    "extra, message",
    [
        ("colour: red\n", "colour.*Extra inputs are not permitted.*valid keys"),
        ("decoding: {temperature: 0.0, topp: 1}\n", "decoding.topp"),
        ("metrics: [{name: vibes}]\n", "unknown metric.*vibes"),
        ("metrics: [{name: mse, direction: higher}]\n", "mse is lower-is-better"),
        ("metrics: [{name: macro_f1, aggregation: mean}]\n", "macro_f1 aggregates as 'corpus'"),
        ("overlong: {policy: shorten}\n", "overlong.policy"),
        ("answer: {extract: json_field}\n", "json_keys"),
        ("prompt: {style: messages}\n", "needs a user template"),
    ],
)
def test_the_schema_is_strict_with_one_line_reasons(tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        load_task_file(_write(tmp_path, BASE + extra))


def test_loader_options_are_checked_against_the_loader(tmp_path):
    with pytest.raises(UserError, match="loader mmlu takes no option.*colour; valid: subjects"):
        load_task_file(_write(tmp_path, "name: t\ndata: {loader: mmlu, path: {path: d}, options: {colour: 1}}\n"))
    with pytest.raises(UserError, match="unknown loader 'nope'"):
        load_task_file(_write(tmp_path, "name: t\ndata: {loader: nope, path: {path: d}}\n"))


def test_a_users_task_file_is_read_like_the_shipped_ones(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"question": "2+2?", "options": ["3", "4"], "answer": "B"}) + "\n")
    tasks = load_task_file(
        _write(
            tmp_path,
            BASE + 'prompt: {style: messages, user: "Q: {question}\\n{options}"}\n'
            "decoding: {max_tokens: 8, temperature: 0.5}\nchat_template_kwargs: "
            "{enable_thinking: false}\nreasoning_effort: low\n",
        )
    )
    task = tasks["t"]
    assert task.path == tmp_path / "d.jsonl" and task.max_tokens == 8 and task.decoding.temperature == 0.5
    assert task.chat_template_kwargs == {"enable_thinking": False} and task.reasoning_effort == "low"
    prompt = render(task, task.load()[0], [])
    assert prompt.messages == ({"role": "user", "content": "Q: 2+2?\nA. 3\nB. 4"},)


def test_prompts_carry_system_inline_shots_data_shots_and_history():
    task = Task(
        name="t",
        data={"loader": "medinst", "path": {"path": "x"}},
        prompt={
            "style": "messages",
            "system": "{instruction}",
            "user": "In: {input}",
            "few_shot": {"examples": [{"input": "e1", "answer": "a1"}]},
        },
    )
    item = GenItem("1", {"instruction": "Be brief.", "input": "q"}, "t", history=(("earlier", "reply"),))
    shot = GenItem("0", {"instruction": "Be brief.", "input": "q0"}, "a0")
    assert [m["content"] for m in render(task, item, [shot]).messages] == [
        "Be brief.",
        "In: e1",
        "a1",
        "In: q0",
        "a0",
        "earlier",
        "reply",
        "In: q",
    ]
    no_instruction = GenItem("2", {"instruction": "", "input": "q"}, "t")
    assert render(task, no_instruction, []).messages[0]["role"] == "user"  # an empty system message is not sent
    with pytest.raises(UserError, match=r"names \{context\}, which its items lack"):
        render(task.model_copy(update={"prompt": task.prompt.model_copy(update={"user": "{context}"})}), item, [])
    braces = task.model_copy(update={"prompt": task.prompt.model_copy(update={"user": "{'cop': x} {input}"})})
    assert render(braces, item, []).messages[-1]["content"] == "{'cop': x} q"  # JSON braces need no escaping


PUBMEDQA = MCItem("p", "Context: c\nq?", {"A": "yes", "B": "no", "C": "maybe"}, "B")


def test_one_word_answers_are_whole_words_never_prefixes():
    task = study_tasks()["multimedqa_pubmedqa"]
    assert parse_task_answer(task, "No.", PUBMEDQA).choice == "B"
    assert parse_task_answer(task, "maybe, the data are mixed", PUBMEDQA).choice == "C"
    # The study's prefix match read "not sure" and "nonetheless" as "no"; here they are unparsed.
    assert parse_task_answer(task, "not sure", PUBMEDQA).how == "refusal"
    assert parse_task_answer(task, "Nonetheless yes", PUBMEDQA).choice is None
    letter_task = study_tasks()["multimedqa_medqa"]
    options = {"A": "x", "B": "y", "C": "z", "D": "w"}
    assert parse_task_answer(letter_task, "B", MCItem("m", "q", options, "B")).choice == "B"
    assert parse_task_answer(letter_task, "Answer: B", MCItem("m", "q", options, "B")).choice is None


def test_json_answers_fenced_bare_or_python_literals():
    assert json_field('```json\n{"cop": "Vitamin C", "cop_index": 1}\n```', ("cop",)) == "Vitamin C"
    assert json_field("Sure! {'cop': 'None of the above', 'why': 'x'} Stop Here", ("cop",)) == "None of the above"
    assert json_field('{"Correct Answer": "Femur"}', ("answer", "correct answer")) == "Femur"
    assert json_field("no json at all", ("cop",)) is None


def test_generation_items_are_scored_right_wrong_or_refused():
    nota = study_tasks()["medhalt_reasoning_nota"]
    item = GenItem("n", {"input": "{}"}, "None of the above", kind="nota")
    assert score_generation(nota, item, '{"cop": "none of the above."}').correct is True
    wrong = score_generation(nota, item, '{"cop": "Radial nerve"}')
    assert wrong.correct is False and wrong.abstained is False
    unreadable = score_generation(nota, item, "I think radial")
    assert unreadable.parsed_as == "unparsed" and unreadable.correct is False
    fake = study_tasks()["medhalt_reasoning_fake"]
    made_up = GenItem("k", {"input": "{}"}, "I do not know", kind="fake")
    assert score_generation(fake, made_up, '{"cop": "I do not know"}').correct is True
    assert score_generation(fake, made_up, '{"cop": "Lunase"}').correct is False
    ir = study_tasks()["medhalt_ir_pmid2title"]
    real = GenItem("i", {"input": "{}"}, "Initial sequencing and analysis of the human genome")
    unknown = score_generation(ir, real, '{"paper_title": "Unknown"}')
    assert unknown.correct is False and unknown.abstained is True  # abstaining is not hallucinating
    medinst = study_tasks()["medinst32_ncbi_disease"]
    free = score_generation(medinst, GenItem("m", {"input": "x"}, "[B]"), "  [B] [O]  ")
    assert free.answer == "[B] [O]" and "correct" not in free.to_json()  # free text feeds no flag calibration
    assert extract(medinst, "   ") is None


def test_a_template_naming_a_missing_field_fails_when_the_task_loads(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"question": "q", "options": ["a", "b"], "answer": "A"}) + "\n")
    task = load_task_file(_write(tmp_path, BASE + "prompt: {style: messages, user: 'Abstract: {context}'}\n"))["t"]
    with pytest.raises(UserError, match=r"task t: the prompt names \{context\}.*fields: letters, options, question"):
        task.load()


def test_suites_expand_member_suites_once_and_refuse_cycles():
    from evaluators.tasks import suite_members

    suites = {"a": ("x", "b"), "b": ("y", "x"), "loop": ("z", "loop2"), "loop2": ("loop",)}
    assert suite_members("a", suites) == ("x", "y")
    with pytest.raises(UserError, match="suite loop includes itself"):
        suite_members("loop", suites)
