"""The flags the gateway raises are the signals the evaluators calibrated, bit for bit.

Real vLLM responses (chat and completion, streamed and not) are recorded
through the shared gateway; the evaluators' own readers and rules
(`evaluators.requests.generate`, `TokenTrace`, `compute_signals`,
`raised_flags` with the report card's thresholds, `is_refusal`) applied to the
recorded tokens must give the gateway's `reliability` object. The base
cross-check must score the same token positions on both sides, also for an
answer that re-tokenises differently in context than it was generated.
"""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from evaluators.client import EndpointClient
from evaluators.evaluate import base_answer_logprob
from evaluators.requests import Generation, Prompt, generate
from moeprune.formats.report_card import ReportCard
from moeprune.reliability.crosscheck import answer_logprobs, base_check_request, mean
from moeprune.reliability.decision import decide
from moeprune.reliability.refusal import is_refusal
from moeprune.reliability.signals import compute_signals, raised_flags
from moeprune.reliability.token_trace import TokenTrace

pytestmark = pytest.mark.slow
QUESTION = "Which organ does hepatitis affect?"
PROMPTS = [
    "Metformin treats",
    "The kidney",
    "Paris is the",
    "Aspirin inhibits",
    "Question: gold? Answer:",
    "Vitamin C",
    "The liver metabolises",
    "Mixture-of-experts models",
]


class Recorded:
    """An EndpointClient stand-in that answers the evaluators' request with a recorded response."""

    def __init__(self, response: dict):
        self.response = response

    async def post(self, path: str, body: dict, **_options) -> dict:
        return self.response


def post(gateway, path: str, body: dict) -> dict:
    response = httpx.post(gateway.url + path, headers=gateway.headers, json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def streamed(gateway, path: str, body: dict) -> tuple[list[dict], dict]:
    """The stream's chunks with choices, and the final chunk carrying `reliability`."""
    chunks = []
    with httpx.stream(
        "POST", gateway.url + path, headers=gateway.headers, json={**body, "stream": True}, timeout=120
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return [c for c in chunks if c.get("choices")], next(c for c in chunks if "reliability" in c)


def evaluators_verdict(generation: Generation, thresholds: dict[str, float]) -> tuple[dict, list[str], bool]:
    """Signals, flags and abstention as the evaluators compute them. The session's card has no reliability
    section, so the certificate's flag is `uncertified` whatever the answer (moeprune.reliability.decision)."""
    signals = compute_signals(generation.token_logprobs or [], generation.top_logprobs)
    flags = raised_flags(signals, thresholds)
    if decide(None, None).uncertified:
        flags.append("uncertified")
    return signals, flags, is_refusal(generation.raw_text)


def same_signals(gateway_signals: dict, ours: dict) -> None:
    for name, value in ours.items():
        if math.isnan(value):
            assert gateway_signals[name] is None, name
        else:
            assert gateway_signals[name] == round(value, 6), name


@pytest.fixture(scope="module")
def thresholds(gateway):
    card = ReportCard.load(gateway.dirs["report_card"])
    return {name: entry.threshold for name, entry in card.flags.items()}


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completion"])
def test_recorded_responses_give_the_same_signals_flags_and_refusals_on_both_sides(gateway, thresholds, chat):
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body = {"model": "pruned", "max_tokens": 10, "temperature": 0}
    if chat:
        body.update(messages=[{"role": "user", "content": QUESTION}], logprobs=True, top_logprobs=5)
        prompt = Prompt(messages=tuple(body["messages"]))
    else:
        body.update(prompt=QUESTION, logprobs=5)
        prompt = Prompt(text=QUESTION)
    recorded = post(gateway, path, body)
    generation = asyncio.run(generate(Recorded(recorded), prompt, 10))
    assert generation.token_logprobs, "the gateway must hand the client the logprobs it asked for"
    signals, flags, abstained = evaluators_verdict(generation, thresholds)
    reliability = recorded["reliability"]
    same_signals(reliability["signals"], signals)
    assert [f for f in reliability["flags"] if f != "base_disagreement"] == flags
    assert reliability["abstained"] == abstained

    # The same request streamed: the chunks, read by the same TokenTrace, give the same verdict.
    chunks, final = streamed(gateway, path, body)
    trace = TokenTrace()
    for chunk in chunks:
        trace.add_choice(chunk["choices"][0], chat)
    assert trace.answer == generation.raw_text  # greedy: the same answer as unstreamed
    stream_signals = compute_signals(trace.token_logprobs, trace.top_logprobs)
    same_signals(final["reliability"]["signals"], stream_signals)
    assert final["reliability"]["flags"] == reliability["flags"]


def test_the_abstention_and_the_refusal_rate_are_one_function():
    answers = [
        "Unknown.",
        "No such drug exists.",
        "That does not exist.",
        "As an AI, I cannot say.",
        "I cannot help with that.",
        "Not sure.",
        "I'm unable to answer that.",
        "I don't know.",
    ]
    from app.reliability.policy import FlagPolicy
    from app.reliability.verdict import judge
    from evaluators.prompts import parse_answer

    options = {"A": "Liver", "B": "I don't know"}
    for answer in answers:
        trace = TokenTrace(text=[answer])
        gateway_refused = judge(trace, FlagPolicy())["abstained"]
        card_refused = parse_answer(answer, options).abstained(options)
        assert gateway_refused and card_refused, answer
    assert not is_refusal("The liver.") and not is_refusal("Unknowns remain in the literature? No: liver.")


def test_the_base_cross_check_scores_the_same_positions_on_both_sides(gateway):
    """Find an answer whose in-context tokenisation has a different length than its generated tokens
    (bounded search), then check the gateway's base_mean_logprob is the evaluators' for it."""
    found = None
    for text in PROMPTS:
        messages = [{"role": "user", "content": text}]
        recorded = post(
            gateway,
            "/v1/chat/completions",
            {
                "model": "pruned",
                "messages": messages,
                "max_tokens": 12,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": 5,
            },
        )
        generation = asyncio.run(generate(Recorded(recorded), Prompt(messages=tuple(messages)), 12))
        probe = base_check_request(generation.raw_text, messages=messages)
        scored = post(gateway, "/v1/chat/completions", {**probe, "model": "base"})
        entries = scored["prompt_logprobs"]
        in_context = len(entries) - generation.prompt_tokens
        if generation.raw_text and in_context != len(generation.token_logprobs):
            found = (messages, recorded, generation, entries)
            break
    assert found, "no answer in the bounded search re-tokenised differently; widen PROMPTS"
    messages, recorded, generation, entries = found
    gateway_score = recorded["reliability"]["signals"]["base_mean_logprob"]

    async def evaluators_score():
        async with EndpointClient(gateway.url, "base", api_key=gateway.api_key, concurrency=1) as client:
            return await base_answer_logprob(client, Prompt(messages=tuple(messages)), generation)

    ours = asyncio.run(evaluators_score())
    assert gateway_score == pytest.approx(ours, abs=1e-5)
    # The answer's tokens start where the prompt's end (the variant's own count); the old rule (the last
    # len(trace) positions) scores other tokens, so it would not have matched.
    exact = mean(
        answer_logprobs({"prompt_logprobs": entries}, generation.raw_text, prompt_tokens=generation.prompt_tokens)
    )
    last_n = [next(iter(e.values()))["logprob"] for e in entries[-len(generation.token_logprobs) :]]
    assert exact == pytest.approx(ours, abs=1e-5)
    assert sum(last_n) / len(last_n) != pytest.approx(exact, abs=1e-6)
