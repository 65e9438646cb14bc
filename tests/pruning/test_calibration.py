import json

import pytest

from moeprune.errors import UserError
from pruning.calibration import load_calibration, token_stream_sha256
from pruning.calibration_records import read_documents, render_pubmedqa


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from demo.tokenizer import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


PUBMEDQA = {
    "111": {
        "QUESTION": "Does aspirin inhibit cyclooxygenase?",
        "CONTEXTS": ["Aspirin is an NSAID.", "It acetylates COX."],
        "LONG_ANSWER": "Yes, irreversibly.",
        "final_decision": "yes",
        "YEAR": "2001",
    },
    "222": {
        "QUESTION": "Is metformin a biguanide?",
        "CONTEXTS": ["Metformin treats diabetes."],
        "LONG_ANSWER": "It is.",
        "final_decision": "yes",
    },
}


def test_jsonl_text_and_messages_rendered_through_the_chat_template(tmp_path, tokenizer):
    path = write_jsonl(
        tmp_path / "cal.jsonl",
        [
            {"text": "Paris is the capital of France."},
            {"messages": [{"role": "user", "content": "Which organ?"}, {"role": "assistant", "content": "The liver."}]},
        ],
    )
    calibration = load_calibration([path], tokenizer, samples=10)
    assert calibration.record["samples"] == 2
    chat_ids = calibration.sequences[1]
    rendered = tokenizer.decode(chat_ids)
    # The template's role tags are in the stream, as the study rendered its samples.
    assert "<|user|>Which organ?<|end|>" in rendered and "<|assistant|>The liver.<|end|>" in rendered
    assert tokenizer.convert_tokens_to_ids("<|user|>") in chat_ids
    assert calibration.record["tokens"] == sum(len(s) for s in calibration.sequences)


def test_plain_text_files_split_on_blank_lines(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("first paragraph\nstill first\n\n\nsecond paragraph\n")
    documents = read_documents(path)
    assert [d.text for d in documents] == ["first paragraph\nstill first", "second paragraph"]
    assert [d.source for d in documents] == ["notes.txt:1", "notes.txt:5"]


def test_pubmedqa_json_renders_question_contexts_and_answer(tmp_path):
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps(PUBMEDQA, indent=1))
    documents = read_documents(path)
    assert len(documents) == 2
    text = documents[0].text
    assert text == render_pubmedqa(PUBMEDQA["111"])
    for part in (
        "Does aspirin inhibit cyclooxygenase?",
        "Aspirin is an NSAID. It acetylates COX.",
        "Yes, irreversibly.",
        "yes",
    ):
        assert part in text


@pytest.mark.parametrize(
    "rows, line, words",
    [
        ([{"text": "ok"}, "{not json", {"text": "ok"}], 2, "not valid JSON"),
        ([{"text": "ok"}, {"text": "ok"}, {"prompt": "no text field"}], 3, '"text", a list "messages"'),
        ([{"messages": [{"role": "user"}]}], 1, '"role" and "content"'),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, tokenizer, rows, line, words):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError) as error:
        load_calibration([path], tokenizer)
    assert f"bad.jsonl:{line}:" in str(error.value) and words in str(error.value)


def test_malformed_pubmedqa_entry_names_its_line(tmp_path):
    data = dict(PUBMEDQA)
    data["333"] = {"QUESTION": "Missing contexts?", "LONG_ANSWER": "x"}
    path = tmp_path / "pq.json"
    path.write_text(json.dumps(data, indent=1))
    line = path.read_text().splitlines().index(' "333": {') + 1
    with pytest.raises(UserError, match=rf"pq.json:{line}: PubMedQA entry '333'"):
        read_documents(path)


def test_unknown_suffix_and_missing_file_are_user_errors(tmp_path, tokenizer):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(UserError, match=r"\.jsonl, \.txt, \.json"):
        load_calibration([tmp_path / "data.csv"], tokenizer)
    with pytest.raises(UserError, match="does not exist"):
        load_calibration([tmp_path / "absent.jsonl"], tokenizer)


def test_sampling_truncation_and_a_stable_token_stream_hash(tmp_path, tokenizer):
    path = write_jsonl(
        tmp_path / "many.jsonl", [{"text": f"{i * 7919} is sample {i}: the liver filters."} for i in range(40)]
    )
    first = load_calibration([path], tokenizer, samples=8, max_tokens=5, seed=1)
    again = load_calibration([path], tokenizer, samples=8, max_tokens=5, seed=1)
    other_seed = load_calibration([path], tokenizer, samples=8, max_tokens=5, seed=2)
    assert first.record["samples"] == 8 and all(len(s) <= 5 for s in first.sequences)
    assert first.record["tokens"] == sum(len(s) for s in first.sequences)
    assert first.sequences == again.sequences
    assert first.record["sha256"] == again.record["sha256"] == token_stream_sha256(first.sequences)
    assert other_seed.record["sha256"] != first.record["sha256"]
    # The hash is of the ids with sample boundaries: moving a boundary changes it.
    assert token_stream_sha256([[1, 2], [3]]) != token_stream_sha256([[1], [2, 3]])
    assert first.record["files"] == [str(path)] and first.record["documents_available"] == 40


# ------------------------------------------------------------ the study's calibration: MedINST, template kwargs, FILE:N

MEDINST = [
    {"instruction": "Name the organ.", "input": "Hepatitis inflames it.", "output": "The liver."},
    {"instruction": "Which drug treats type 2 diabetes?", "input": "", "output": "Metformin."},
    {"instruction": "Say the capital of France.", "output": "Paris."},
]


def test_medinst_records_become_instruction_input_and_output_turns(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "medinst.jsonl", [*MEDINST, {"text": "A plain line still reads as text."}])
    calibration = load_calibration([path], tokenizer, samples=10)
    expected = [
        [
            {"role": "user", "content": "Name the organ.\n\nInput: Hepatitis inflames it."},
            {"role": "assistant", "content": "The liver."},
        ],
        [
            {"role": "user", "content": "Which drug treats type 2 diabetes?"},
            {"role": "assistant", "content": "Metformin."},
        ],
        [{"role": "user", "content": "Say the capital of France."}, {"role": "assistant", "content": "Paris."}],
    ]
    for ids, messages in zip(calibration.sequences, expected):
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        assert ids == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    decoded = tokenizer.decode(calibration.sequences[0])
    assert "<|user|>Name the organ.\n\nInput: Hepatitis inflames it.<|end|>" in decoded
    assert calibration.record["per_file"][str(path)]["kinds"] == {"medinst": 3, "text": 1}


@pytest.mark.parametrize(
    "row, words",
    [
        ({"instruction": "Name it.", "output": 3}, 'string "output"'),
        ({"instruction": "", "output": "x"}, 'non-empty string "instruction"'),
        ({"instruction": "Name it.", "input": ["a"], "output": "x"}, '"input" must be a string'),
        ({"output": "x"}, 'non-empty string "instruction"'),
    ],
)
def test_malformed_medinst_record_names_file_and_line(tmp_path, tokenizer, row, words):
    path = write_jsonl(tmp_path / "bad.jsonl", [MEDINST[0], row])
    with pytest.raises(UserError) as error:
        load_calibration([path], tokenizer)
    assert "bad.jsonl:2:" in str(error.value) and words in str(error.value)


@pytest.fixture
def thinking_tokenizer(tokenizer):
    """The tiny tokenizer with a template that, like Qwen3's and gpt-oss', reads template arguments."""
    import copy

    clone = copy.deepcopy(tokenizer)
    clone.chat_template = (
        "{% for message in messages %}<|{{ message['role'] }}|>"
        "{% if message['role'] == 'assistant' and enable_thinking is defined and not enable_thinking %}"
        "liver {% endif %}{{ message['content'] }}<|end|>\n{% endfor %}"
        "{% if reasoning_effort is defined %}<|system|>{{ reasoning_effort }}<|end|>{% endif %}"
    )
    return clone


def test_chat_template_kwargs_reach_the_rendered_text_and_the_record(tmp_path, thinking_tokenizer):
    path = write_jsonl(tmp_path / "medinst.jsonl", MEDINST[:1])
    plain = load_calibration([path], thinking_tokenizer)
    no_thinking = load_calibration([path], thinking_tokenizer, chat_template_kwargs='{"enable_thinking": false}')
    effort = load_calibration([path], thinking_tokenizer, chat_template_kwargs={"reasoning_effort": "low"})
    assert "<|assistant|>liver The liver." not in thinking_tokenizer.decode(plain.sequences[0])
    assert "<|assistant|>liver The liver." in thinking_tokenizer.decode(no_thinking.sequences[0])
    assert thinking_tokenizer.decode(effort.sequences[0]).endswith("<|system|>low<|end|>")
    assert len({plain.record["sha256"], no_thinking.record["sha256"], effort.record["sha256"]}) == 3
    assert plain.record["chat_template_kwargs"] == {}
    assert no_thinking.record["chat_template_kwargs"] == {"enable_thinking": False}
    assert effort.record["chat_template_kwargs"] == {"reasoning_effort": "low"}


@pytest.mark.parametrize(
    "value, words",
    [
        ("[1, 2]", "must be a JSON object"),
        ('"low"', "must be a JSON object"),
        ("{enable_thinking: false}", "not valid JSON"),
        ('{"tokenize": true}', "may not set tokenize"),
    ],
)
def test_chat_template_kwargs_that_are_not_an_object_are_user_errors(tmp_path, tokenizer, value, words):
    path = write_jsonl(tmp_path / "medinst.jsonl", MEDINST[:1])
    with pytest.raises(UserError, match=words) as error:
        load_calibration([path], tokenizer, chat_template_kwargs=value)
    assert error.value.param == "chat_template_kwargs"


def numbered(path, prefix, n):
    return write_jsonl(path, [{"text": f"{prefix} sample {i}: the liver filters blood {i * 31}."} for i in range(n)])


def test_file_counts_draw_from_each_file_alone_with_the_seed(tmp_path, tokenizer):
    med, general = numbered(tmp_path / "med.jsonl", "med", 20), numbered(tmp_path / "general.jsonl", "general", 30)
    both = load_calibration([f"{med}:4", f"{general}:6"], tokenizer, samples=1, seed=3)
    assert both.record["samples"] == 10 and both.record["files"] == [str(med), str(general)]
    per_file = both.record["per_file"]
    assert per_file[str(med)] == {
        "requested": 4,
        "available": 20,
        "samples": 4,
        "tokens": sum(map(len, both.sequences[:4])),
        "kinds": {"text": 4},
    }
    assert per_file[str(general)]["requested"] == 6 and per_file[str(general)]["samples"] == 6
    # Each file's draw is its own: the same as drawing from that file alone, whatever else is given.
    alone = load_calibration([f"{med}:4"], tokenizer, seed=3)
    assert both.sequences[:4] == alone.sequences
    assert load_calibration([f"{general}:6"], tokenizer, seed=3).sequences == both.sequences[4:]
    assert load_calibration([f"{med}:4"], tokenizer, seed=4).sequences != alone.sequences
    # Pooling the same two files draws differently: FILE:N is not a pooled draw of 10.
    pooled = load_calibration([med, general], tokenizer, samples=10, seed=3)
    assert pooled.sequences != both.sequences and pooled.record["per_file"][str(med)]["requested"] is None


def test_files_without_a_count_share_samples_beside_counted_ones(tmp_path, tokenizer):
    med = numbered(tmp_path / "med.jsonl", "med", 20)
    a, b = numbered(tmp_path / "a.jsonl", "a", 5), numbered(tmp_path / "b.jsonl", "b", 5)
    mixed = load_calibration([f"{med}:3", a, b], tokenizer, samples=4, seed=0)
    per_file = mixed.record["per_file"]
    assert per_file[str(med)]["samples"] == 3
    assert per_file[str(a)]["samples"] + per_file[str(b)]["samples"] == 4
    assert mixed.record["samples"] == 7


@pytest.mark.parametrize(
    "spec, words",
    [
        ("{med}:21", "asks for 21 samples, but the file holds 20 documents"),
        ("{med}:0", "must be a positive integer"),
        ("{med}:many", "must be a positive integer"),
    ],
)
def test_bad_file_counts_are_user_errors(tmp_path, tokenizer, spec, words):
    med = numbered(tmp_path / "med.jsonl", "med", 20)
    with pytest.raises(UserError, match=words):
        load_calibration([spec.format(med=med)], tokenizer)
    with pytest.raises(UserError, match="given more than once"):
        load_calibration([f"{med}:2", med], tokenizer)
