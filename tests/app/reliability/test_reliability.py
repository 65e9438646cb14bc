"""Reliability flags from token logprobs: request rewriting, trimming, thresholds, refusals (no vLLM)."""

from __future__ import annotations

import json

import pytest

from app.reliability.logprobs import plan_logprobs
from app.reliability.policy import load_policy
from app.reliability.verdict import flags_header, judge
from moeprune.errors import UserError
from moeprune.reliability.token_trace import TOP_LOGPROBS as TOP_K
from moeprune.reliability.token_trace import TokenTrace


def chat_choice(logprobs: list[float], content="yes", top=5):
    entries = [
        {"token": "t", "logprob": lp, "top_logprobs": [{"token": str(i), "logprob": lp - i} for i in range(top)]}
        for lp in logprobs
    ]
    return {"index": 0, "message": {"content": content}, "logprobs": {"content": entries}}


def test_chat_requests_always_ask_for_top_5_and_hide_them_when_not_asked():
    body = {"messages": []}
    plan = plan_logprobs(body, chat=True)
    assert body["logprobs"] is True and body["top_logprobs"] == TOP_K
    choice = chat_choice([-0.1, -0.2])
    plan.strip(choice)
    assert choice["logprobs"] is None


def test_chat_logprobs_are_trimmed_to_what_the_client_asked():
    body = {"logprobs": True, "top_logprobs": 2}
    plan = plan_logprobs(body, chat=True)
    assert body["top_logprobs"] == 5
    choice = chat_choice([-0.1])
    plan.strip(choice)
    assert len(choice["logprobs"]["content"][0]["top_logprobs"]) == 2


def test_completion_logprobs_keep_the_clients_best_alternatives():
    body = {"logprobs": 1}
    plan = plan_logprobs(body, chat=False)
    assert body["logprobs"] == 5
    choice = {"text": "x", "logprobs": {"token_logprobs": [-0.5], "top_logprobs": [{"a": -2.0, "b": -0.5, "c": -1}]}}
    trace = TokenTrace()
    trace.add_choice(choice, chat=False)
    plan.strip(choice)
    assert choice["logprobs"]["top_logprobs"] == [{"b": -0.5}]
    assert trace.token_logprobs == [-0.5] and sorted(trace.top_logprobs[0]) == [-2.0, -1, -0.5]


def test_echo_keeps_only_the_generated_tokens():
    trace = TokenTrace([None, -1.0, -2.0, -0.1], [[], [-1.0], [-2.0], [-0.1]], ["x"])
    assert trace.generated_only(1).token_logprobs == [-0.1]


def test_confident_answer_raises_no_flags_and_unsure_one_does():
    confident = TokenTrace()
    confident.add_choice(chat_choice([-0.01, -0.02], top=1), chat=True)
    verdict = judge(confident, load_policy(None))
    assert verdict["flags"] == [] and verdict["thresholds_source"] == "defaults"
    assert flags_header(verdict) == "none"
    unsure = TokenTrace()
    unsure.add_choice(chat_choice([-3.0, -6.0]), chat=True)
    assert {"low_confidence", "uncertain_span"} <= set(judge(unsure, load_policy(None))["flags"])


def test_report_card_thresholds_and_baselines(tmp_path):
    card = tmp_path / "report_card.json"
    card.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "variant": "v",
                "model": "v",
                "tasks": {},
                "flags": {
                    "low_confidence": {
                        "signal": "mean_logprob",
                        "direction": "below",
                        "threshold": -0.001,
                        "base_rate": 0.2,
                    }
                },
            }
        )
    )
    policy = load_policy(card)
    assert policy.source == "report_card" and policy.baselines == {"low_confidence": 0.2}
    trace = TokenTrace()
    trace.add_choice(chat_choice([-0.01]), chat=True)
    assert "low_confidence" in judge(trace, policy)["flags"]


def test_unreadable_report_card_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="report card"):
        load_policy(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "answer, refused", [("I don't know the answer to that.", True), ("I’m not sure.", True), ("The liver.", False)]
)
def test_an_abstention_is_reported_apart_from_the_flags(answer, refused):
    trace = TokenTrace()
    trace.add_choice(chat_choice([-0.01], content=answer, top=1), chat=True)
    verdict = judge(trace, load_policy(None))
    assert verdict["abstained"] == refused
    assert "refusal" not in verdict["flags"]


def test_empty_answer_has_null_signals_not_nan():
    verdict = judge(TokenTrace(), load_policy(None))
    assert verdict["signals"]["mean_logprob"] is None
    json.dumps(verdict, allow_nan=False)
