"""Robust runs: a refused item never aborts the run, the card counts it, and a rerun retries only it."""

import json

import pytest

from evaluators.cache import ResponseCache
from evaluators.requests import expanded, kept_generation, kept_scoring, read_generation
from evaluators.runner import run_eval
from evaluators.tasks import Task
from moeprune.errors import UserError
from moeprune.reliability.crosscheck import answer_logprobs
from tests.evaluators.endpoints import endpoint, posted

LONG_QUESTION = "Background " + "lorem ipsum dolor sit amet " * 60 + "Which organ makes bile?"


def write_items(path, long_question=LONG_QUESTION):
    rows = [
        {
            "id": f"q{i}",
            "question": f"Which organ makes substance {i}?",
            "options": {"A": "Spleen", "B": "Liver", "C": "Lung"},
            "answer": "B",
        }
        for i in range(6)
    ]
    rows.insert(
        2,
        {"id": "long", "question": long_question, "options": {"A": "Spleen", "B": "Liver", "C": "Lung"}, "answer": "B"},
    )
    rows.insert(
        4,
        {
            "id": "flaky",
            "question": "Which organ makes the flaky substance?",
            "options": {"A": "Spleen", "B": "Liver", "C": "Lung"},
            "answer": "B",
        },
    )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


class FlakyReply:
    """Refuses the 'flaky' item (HTTP 400, not about length) until `healed`."""

    def __init__(self):
        self.healed = False

    def __call__(self, request):
        if "flaky" in json.dumps(request.body) and not self.healed:
            return 400
        return "B"


def generations(requests):
    return [r for r in requests if "logprobs" in r and not r.get("echo") and "prompt_logprobs" not in r]


def test_an_over_long_item_and_an_endpoint_error_are_counted_and_only_they_are_retried(tmp_path):
    data = write_items(tmp_path / "items.jsonl")
    task = Task("robust", "jsonl", data, overlong={"policy": "skip"})
    reply = FlakyReply()
    with endpoint(reply, max_model_len=64, context_chars=600) as (url, engine):
        first = json.loads(run_eval(url, "m", [task], tmp_path / "out", progress=False).read_text())
        first_items = (tmp_path / "out" / "items.jsonl").read_text()
        first_requests = len(engine.requests)
        reply.healed = True
        second = json.loads(run_eval(url, "m", [task], tmp_path / "out", progress=False).read_text())
        rerun = posted(engine)[first_requests:]
    counts = first["tasks"]["robust"]
    assert counts["n"] == 6 and counts["n_failed"] == 1 and counts["failures"] == {"HTTP 400": 1}
    assert counts["n_skipped"] == 1
    [(reason, skipped)] = counts["skipped"].items()
    assert reason.startswith("over-long: skipped by the task's policy") and "max_model_len 64" in reason
    assert skipped["count"] == 1
    assert counts["metrics"]["exact_match"]["value"] == 1.0  # over the 6 answered items
    items = {r["id"]: r for r in map(json.loads, first_items.splitlines())}
    assert items["flaky"]["failed"] == "HTTP 400" and "scripted failure 400" in items["flaky"]["error"]
    assert "maximum context length" in items["long"]["error"]
    # The rerun asks again for exactly the two items that did not finish (their generation, and the
    # healed item's first option-scoring request); the six answered items come from the cache.
    asked = {("flaky" if "flaky" in json.dumps(r) else "long" if "lorem" in json.dumps(r) else "other") for r in rerun}
    assert asked == {"flaky", "long"} and len(generations(rerun)) == 2
    assert second["tasks"]["robust"]["n"] == 7 and second["tasks"]["robust"]["n_failed"] == 0
    assert second["tasks"]["robust"]["n_skipped"] == 1


def test_truncation_cuts_the_stated_field_from_the_stated_side(tmp_path):
    data = write_items(tmp_path / "items.jsonl")
    task = Task("cut", "jsonl", data, overlong={"policy": "truncate", "side": "left", "field": "question"})
    with endpoint(FlakyReply(), max_model_len=64, context_chars=600) as (url, engine):
        card = json.loads(run_eval(url, "m", [task], tmp_path / "out", progress=False).read_text())
    requests = posted(engine)
    assert card["tasks"]["cut"]["n"] == 7 and card["tasks"]["cut"]["n_truncated"] == 1
    cut_prompts = [r["messages"][-1]["content"] for r in generations(requests) if "lorem" in json.dumps(r)]
    assert len(cut_prompts) == 2  # refused once whole, answered once cut
    assert len(cut_prompts[1]) < 600 < len(cut_prompts[0])
    # Cut from the left: the question at the end of the field survives, its start is gone.
    assert "Which organ makes bile?" in cut_prompts[1] and "Background" not in cut_prompts[1]
    items = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "items.jsonl").read_text().splitlines())}
    assert items["long"]["truncated"]["side"] == "left" and items["long"]["truncated"]["cut_chars"] > 0


def test_a_prompt_that_cannot_fit_is_failed_with_the_reason(tmp_path):
    # The options alone exceed the context: cutting the question cannot help.
    data = write_items(tmp_path / "items.jsonl")
    task = Task("nofit", "jsonl", data, overlong={"policy": "truncate", "side": "right", "field": "question"})
    with endpoint(FlakyReply(), max_model_len=12, context_chars=40) as (url, _):
        card = json.loads(run_eval(url, "m", [task], tmp_path / "out", progress=False).read_text())
    failures = card["tasks"]["nofit"]["failures"]
    assert card["tasks"]["nofit"]["n"] == 0 and card["tasks"]["nofit"]["n_failed"] == 8
    assert any(reason.startswith("over-long:") for reason in failures)


def test_progress_moves_with_the_work(tmp_path):
    """Items finish in order: the first item's scoring is sent before the last item's generation
    (before, every item started at once and all generations went first, so no item finished early)."""
    data = write_items(tmp_path / "items.jsonl", long_question="A short question?")
    task = Task("order", "jsonl", data)

    def reply(request):
        return "B"

    with endpoint(reply, max_model_len=64) as (url, engine):
        run_eval(url, "m", [task], tmp_path / "out", progress=False, concurrency=2)
    requests = posted(engine)
    first_scoring = next(i for i, r in enumerate(requests) if "prompt_logprobs" in r)
    last_generation = max(i for i, r in enumerate(requests) if r in generations(requests))
    assert first_scoring < last_generation


def test_endpoint_with_or_without_v1_is_the_same_server_and_cache(tmp_path):
    data = write_items(tmp_path / "items.jsonl", long_question="A short question?")
    with endpoint(lambda request: "B", max_model_len=64) as (url, engine):
        card = json.loads(run_eval(url + "/v1/", "m", [f"jsonl={data}"], tmp_path / "out", progress=False).read_text())
        asked = len(engine.requests)
        run_eval(url, "m", [f"jsonl={data}"], tmp_path / "out", progress=False)
    requests = posted(engine)
    assert all(not r["path"].startswith("/v1/v1") for r in requests)
    assert card["endpoint"] == url and asked > 0 and len(requests) == asked  # the second run: all cached


def test_an_unreachable_endpoint_is_one_line_before_any_item(tmp_path):
    data = write_items(tmp_path / "items.jsonl", long_question="A short question?")
    with endpoint(lambda request: "B", max_model_len=64) as (url, _):
        pass  # the server is gone before the run
    with pytest.raises(UserError, match="cannot reach endpoint"):
        run_eval(url, "m", [f"jsonl={data}"], tmp_path / "out", progress=False)


def big_chat_scoring_response(prompt_tokens: int, answer_tokens: int) -> dict:
    entries = [None] + [
        {str(1000 + i): {"logprob": -0.5 - i / 1000, "rank": 3, "decoded_token": "tok"}}
        for i in range(prompt_tokens + answer_tokens - 1)
    ]
    return {
        "id": "x",
        "choices": [{"message": {"content": "."}, "finish_reason": "length"}],
        "prompt_logprobs": entries,
        "usage": {"prompt_tokens": prompt_tokens + answer_tokens},
    }


def test_the_cache_keeps_only_the_scored_slice_and_old_whole_responses_still_read(tmp_path):
    whole = big_chat_scoring_response(prompt_tokens=2000, answer_tokens=2)
    kept = kept_scoring(whole, prompt_tokens=2000)
    assert len(json.dumps(kept)) * 100 < len(json.dumps(whole))  # ~170 KB -> under 1 %
    want = answer_logprobs(whole, "B", prompt_tokens=2000)
    assert want is not None and answer_logprobs(expanded(kept), "B", prompt_tokens=2000) == want
    assert answer_logprobs(expanded(whole), "B", prompt_tokens=2000) == want  # a whole cached response
    # Completions echo: only the tokens from the continuation on are kept, with the same result.
    prompt = "Question: x\nAnswer:"
    echo = {
        "choices": [
            {
                "text": prompt + " B",
                "logprobs": {
                    "tokens": ["Q", "uestion", ":", " x", "\n", "Answer", ":", " B"],
                    "text_offset": [0, 1, 8, 9, 11, 12, 18, 19],
                    "token_logprobs": [None, -1, -2, -3, -4, -5, -6, -0.25],
                    "top_logprobs": [None] + [{"t": -1.0}] * 7,
                },
            }
        ]
    }
    kept_echo = kept_scoring(echo, prompt=prompt)
    assert answer_logprobs(kept_echo, " B", prompt=prompt) == answer_logprobs(echo, " B", prompt=prompt) == [-0.25]
    # A generation keeps the answer, reasoning, finish reason and logprob values; it reads the same.
    generation = {
        "id": "g",
        "system_fingerprint": "fp",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "B", "reasoning_content": "hmm", "tool_calls": []},
                "logprobs": {
                    "content": [
                        {
                            "token": "B",
                            "bytes": [66],
                            "logprob": -0.1,
                            "top_logprobs": [
                                {"token": "B", "bytes": [66], "logprob": -0.1},
                                {"token": "A", "bytes": [65], "logprob": -2.5},
                            ],
                        }
                    ]
                },
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    }
    assert read_generation(kept_generation(generation), chat=True) == read_generation(generation, chat=True)
    assert len(json.dumps(kept_generation(generation))) < len(json.dumps(generation))
    cache = ResponseCache(tmp_path / "c.jsonl")
    cache.put("k", kept)
    assert ResponseCache(tmp_path / "c.jsonl").get("k") == kept
