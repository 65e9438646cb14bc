import json

import pytest

from pruning.calibration import load_calibration, read_documents, render_pubmedqa, token_stream_sha256
from moeprune.errors import UserError


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from app.demo.tokenizer import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


PUBMEDQA = {
    "111": {"QUESTION": "Does aspirin inhibit cyclooxygenase?", "CONTEXTS": ["Aspirin is an NSAID.", "It acetylates COX."],
            "LONG_ANSWER": "Yes, irreversibly.", "final_decision": "yes", "YEAR": "2001"},
    "222": {"QUESTION": "Is metformin a biguanide?", "CONTEXTS": ["Metformin treats diabetes."],
            "LONG_ANSWER": "It is.", "final_decision": "yes"},
}


def test_jsonl_text_and_messages_rendered_through_the_chat_template(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "cal.jsonl", [
        {"text": "Paris is the capital of France."},
        {"messages": [{"role": "user", "content": "Which organ?"}, {"role": "assistant", "content": "The liver."}]},
    ])
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
    for part in ("Does aspirin inhibit cyclooxygenase?", "Aspirin is an NSAID. It acetylates COX.",
                 "Yes, irreversibly.", "yes"):
        assert part in text


@pytest.mark.parametrize("rows, line, words", [
    ([{"text": "ok"}, "{not json", {"text": "ok"}], 2, "not valid JSON"),
    ([{"text": "ok"}, {"text": "ok"}, {"prompt": "no text field"}], 3, '"text" or a list "messages"'),
    ([{"messages": [{"role": "user"}]}], 1, '"role" and "content"'),
])
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
    path = write_jsonl(tmp_path / "many.jsonl", [{"text": f"{i * 7919} is sample {i}: the liver filters."} for i in range(40)])
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
