"""The base cross-check's end-of-answer term (moeprune.reliability.crosscheck), on response shapes recorded
from vLLM 0.11 CPU: the check's one generated token says whether the base would end the answer there."""

from __future__ import annotations

import math

import pytest

from evaluators.requests import expanded, kept_scoring
from moeprune.reliability.crosscheck import (
    END_LOGPROB_FLOOR,
    answer_end_logprob,
    answer_ended,
    base_check_request,
    base_check_signals,
    base_check_values,
)
from moeprune.reliability.token_trace import TokenTrace

PROMPT_TOKENS = 3


def chat_check(answer_logprobs: list[float], generated: str, generated_logprob: float, finish: str) -> dict:
    """A chat check response: prompt logprobs over 3 prompt tokens and the answer, then one generated token."""
    entries = [None, {"7": {"logprob": -3.0}}, {"8": {"logprob": -2.0}}]
    entries += [{str(100 + i): {"logprob": value}} for i, value in enumerate(answer_logprobs)]
    return {
        "choices": [
            {
                "message": {"content": "" if finish == "stop" else generated},
                "finish_reason": finish,
                "logprobs": {"content": [{"token": generated, "logprob": generated_logprob, "top_logprobs": []}]},
            }
        ],
        "prompt_logprobs": entries,
    }


def test_a_chat_check_request_asks_for_the_generated_tokens_logprob():
    body = base_check_request("I don", messages=[{"role": "user", "content": "q"}])
    assert body is not None and body["logprobs"] is True and body["max_tokens"] == 1


def test_where_the_base_would_stop_too_its_stop_logprob_is_the_end():
    response = chat_check([-0.01, -0.02], "<|end|>", -1e-5, "stop")
    assert answer_end_logprob(response, "diuretic") == -1e-5
    assert base_check_values(response, "diuretic", True, prompt_tokens=PROMPT_TOKENS) == [-0.01, -0.02, -1e-5]


def test_where_the_base_would_go_on_the_end_is_bounded_by_the_rest_of_the_mass():
    # "I don" then the model's end: the base goes on with "'t" at p = 0.99986.
    response = chat_check([-0.0001, -0.0001], "'t", -0.000138, "length")
    end = answer_end_logprob(response, "I don")
    assert end == pytest.approx(math.log(1 - math.exp(-0.000138)))
    assert end < -8.0
    signals = base_check_signals(base_check_values(response, "I don", True, prompt_tokens=PROMPT_TOKENS))
    assert signals["base_min_logprob"] == end
    assert signals["base_mean_logprob"] == pytest.approx((-0.0002 + end) / 3)
    # Without the end term the same answer looks as plausible as any.
    assert base_check_signals(base_check_values(response, "I don", False, prompt_tokens=PROMPT_TOKENS)) == {
        "base_mean_logprob": -0.0001,
        "base_min_logprob": -0.0001,
    }


def test_a_certain_continuation_gives_the_floor_not_minus_infinity():
    assert answer_end_logprob(chat_check([-0.1], "x", 0.0, "length"), "a") == END_LOGPROB_FLOOR
    assert answer_end_logprob(chat_check([-0.1], "<|end|>", -50.0, "stop"), "a") == END_LOGPROB_FLOOR


def test_a_response_without_the_generated_tokens_logprob_scores_no_end():
    response = chat_check([-0.5], "x", -0.1, "length")
    response["choices"][0]["logprobs"] = None
    assert answer_end_logprob(response, "a") is None
    assert base_check_values(response, "a", True, prompt_tokens=PROMPT_TOKENS) == [-0.5]


def test_completions_echo_reads_the_generated_token_after_the_answer():
    prompt, answer = "Q: x\nA:", " I don"
    response = {
        "choices": [
            {
                "text": prompt + answer + "rench",
                "finish_reason": "length",
                "logprobs": {
                    "text_offset": [0, 1, 2, 3, 4, 5, 6, 7, 9, 13],
                    "token_logprobs": [None, -15.1, -12.1, -5.4, -7.3, -16.1, -9.7, -14.0, -11.2, -1.117],
                },
            }
        ]
    }
    values = base_check_values(response, answer, True, prompt=prompt)
    assert values == [-14.0, -11.2, pytest.approx(math.log(1 - math.exp(-1.117)))]
    kept = kept_scoring(response, prompt=prompt)  # the evaluators' cache keeps what the end needs
    assert base_check_values(expanded(kept), answer, True, prompt=prompt) == values


def test_the_evaluators_cache_keeps_a_chat_checks_end():
    response = chat_check([-0.01, -0.02], "'t", -0.5, "length")
    kept = kept_scoring(response, prompt_tokens=PROMPT_TOKENS)
    assert base_check_values(expanded(kept), "ab", True, prompt_tokens=PROMPT_TOKENS) == base_check_values(
        response, "ab", True, prompt_tokens=PROMPT_TOKENS
    )


def test_only_an_answer_the_model_ended_has_an_end():
    assert answer_ended("stop")
    assert answer_ended("stop", 151645)  # a stop token id (vLLM: the model's own end-of-turn token)
    assert not answer_ended("stop", "\n\n")  # a client's stop string cut it
    assert not answer_ended("length") and not answer_ended(None)


def test_a_streamed_trace_learns_how_the_answer_ended_from_its_last_chunk():
    trace = TokenTrace(keep_tokens=False)
    trace.add_choice({"delta": {"content": "I"}, "logprobs": {"content": [{"logprob": -0.1}]}}, chat=True)
    assert not trace.ended
    trace.add_choice({"delta": {"content": " don"}, "finish_reason": "stop", "stop_reason": None}, chat=True)
    assert trace.ended
    cut = TokenTrace()
    cut.add_choice({"text": "x", "finish_reason": "stop", "stop_reason": "###"}, chat=False)
    assert not cut.ended
