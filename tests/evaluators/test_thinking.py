"""Thinking control: the fields every chat request carries, task overrides, and answers split from reasoning."""

import json

import pytest

from evaluators.runner import run_eval
from evaluators.tasks import Task
from evaluators.thinking import ThinkingControl, parse_chat_template_kwargs, split_reasoning
from moeprune.cli import main
from moeprune.errors import UserError
from tests.evaluators.endpoints import endpoint, posted

QUESTIONS = [
    {
        "id": f"q{i}",
        "question": f"Which organ makes substance {i}?",
        "options": {"A": "Spleen", "B": "Liver", "C": "Lung"},
        "answer": "B",
    }
    for i in range(3)
]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS))
    return path


@pytest.mark.parametrize(
    "text, reasoning_field, answer, reasoning",
    [
        ("<think>A looks right, but no.</think>\n\nB", None, "B", "A looks right, but no."),
        ("the template opened the block. A?</think>B", None, "B", "the template opened the block. A?"),
        ("<think>A or maybe C, let me", None, "", "A or maybe C, let me"),  # cut off while thinking: no answer
        (
            "<|channel|>analysis<|message|>A? no.<|end|><|start|>assistant<|channel|>final<|message|>B<|return|>",
            None,
            "B",
            "<|channel|>analysis<|message|>A? no.<|end|><|start|>assistant",
        ),
        ("<|channel|>analysis<|message|>A? no, still thinking", None, "", None),
        ("B", "I considered A first.", "B", "I considered A first."),
        ("B", None, "B", None),
    ],
)
def test_split_reasoning(text, reasoning_field, answer, reasoning):
    split = split_reasoning(text, reasoning_field)
    assert split.answer.strip() == answer
    if reasoning is not None:
        assert split.reasoning == reasoning


def test_task_settings_override_the_run_key_by_key():
    run = ThinkingControl({"enable_thinking": False, "style": "short"}, "low")
    merged = run.overridden_by({"style": "long"}, None)
    assert merged == ThinkingControl({"enable_thinking": False, "style": "long"}, "low")
    assert run.overridden_by(None, "high").reasoning_effort == "high"
    assert merged.request_fields(is_chat=True) == {
        "chat_template_kwargs": {"enable_thinking": False, "style": "long"},
        "reasoning_effort": "low",
    }
    assert merged.request_fields(is_chat=False) == {}  # completion prompts render no template
    assert ThinkingControl().request_fields(is_chat=True) == {}  # nothing sent unless asked


@pytest.mark.parametrize(
    "text, message", [("{enable_thinking: false}", "not valid JSON"), ("[1, 2]", "expected a JSON object")]
)
def test_bad_chat_template_kwargs_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_chat_template_kwargs(text)


def test_bad_flags_exit_2_with_one_line(tmp_path, data, capsys):
    code = main(
        [
            "eval",
            "--endpoint",
            "http://127.0.0.1:1",
            "--model",
            "m",
            "--tasks",
            f"jsonl={data}",
            "--chat-template-kwargs",
            "{oops",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "--chat-template-kwargs: not valid JSON" in capsys.readouterr().err


def test_every_chat_request_carries_the_settings_and_reasoning_is_not_parsed(tmp_path, data):
    def reply(request):
        # The reasoning names option A; only the answer after it (B) may be parsed.
        if "q0" in json.dumps(request.body) or "substance 0" in json.dumps(request.body):
            return {"role": "assistant", "content": "B", "reasoning_content": "A is the spleen... no."}
        return "<think>Answer A? No.</think>B"

    chat = Task("chat_task", "jsonl", data, chat_template_kwargs={"enable_thinking": True})
    completion = Task("completion_task", "jsonl", data, template="completion")
    with endpoint(reply, max_model_len=64) as (url, engine):
        card_path = run_eval(
            url,
            "m",
            [chat, completion],
            tmp_path / "out",
            progress=False,
            thinking=ThinkingControl({"enable_thinking": False, "keep": 1}, "none"),
        )
    requests = posted(engine)
    card = json.loads(card_path.read_text())
    chat_bodies = [r for r in requests if r["path"] == "/v1/chat/completions"]
    # Per item: the generation and one option-scoring request (rejected here: scoring stops at the first).
    assert len(chat_bodies) == 3 * 2
    for body in chat_bodies:  # generations and scoring alike
        assert body["chat_template_kwargs"] == {"enable_thinking": True, "keep": 1}
        assert body["reasoning_effort"] == "none"
    for body in (r for r in requests if r["path"] == "/v1/completions"):
        assert "chat_template_kwargs" not in body and "reasoning_effort" not in body
    assert card["tasks"]["chat_task"]["thinking"] == {
        "chat_template_kwargs": {"enable_thinking": True, "keep": 1},
        "reasoning_effort": "none",
    }
    assert "thinking" not in card["tasks"]["completion_task"]
    assert card["tasks"]["chat_task"]["metrics"]["exact_match"]["value"] == 1.0
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    chat_items = [r for r in items if r["task"] == "chat_task"]
    assert [r["choice"] for r in chat_items] == ["B", "B", "B"]
    assert chat_items[0]["reasoning"] == "A is the spleen... no."
    assert chat_items[1]["reasoning"] == "Answer A? No." and chat_items[1]["response"] == "B"
