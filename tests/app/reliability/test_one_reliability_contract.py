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
from evaluators.evaluate import base_answer_signals
from evaluators.requests import Generation, Prompt, generate
from moeprune.formats.report_card import ReportCard
from moeprune.reliability.crosscheck import answer_ended, answer_logprobs, base_check_request, base_check_values
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
            found = (messages, recorded, generation, entries, scored)
            break
    assert found, "no answer in the bounded search re-tokenised differently; widen PROMPTS"
    messages, recorded, generation, entries, scored = found
    gateway_signals = recorded["reliability"]["signals"]

    async def evaluators_signals():
        async with EndpointClient(gateway.url, "base", api_key=gateway.api_key, concurrency=1) as client:
            return await base_answer_signals(client, Prompt(messages=tuple(messages)), generation)

    ours = asyncio.run(evaluators_signals())
    assert set(ours) == {"base_mean_logprob", "base_min_logprob"}
    for name, value in ours.items():
        assert gateway_signals[name] == pytest.approx(value, abs=1e-5), name
    # The answer's tokens start where the prompt's end (the variant's own count); the old rule (the last
    # len(trace) positions) scores other tokens, so it would not have matched.
    in_answer = answer_logprobs(scored, generation.raw_text, prompt_tokens=generation.prompt_tokens)
    values = base_check_values(
        scored, generation.raw_text, answer_ended(generation.finish_reason), prompt_tokens=generation.prompt_tokens
    )
    assert values is not None and in_answer is not None
    assert sum(values) / len(values) == pytest.approx(ours["base_mean_logprob"], abs=1e-5)
    last_n = [next(iter(e.values()))["logprob"] for e in entries[-len(generation.token_logprobs) :]]
    assert sum(last_n) / len(last_n) != pytest.approx(sum(in_answer) / len(in_answer), abs=1e-6)


@pytest.mark.parametrize("ends", [True, False], ids=["ended by the model", "cut by max_tokens"])
def test_the_base_check_scores_an_answers_end_when_the_variant_ended_it(gateway, ends):
    """The tiny random model is made to end its answer after 3 tokens (its end-of-sequence token favoured by
    logit_bias, held back by min_tokens) or cut at 3 by max_tokens. Ended, the base check has one value more
    than the answer's tokens (the base's view of the end); cut, none; the gateway's signals are the
    evaluators' either way."""
    eos = json.loads((gateway.dirs["pruned"] / "config.json").read_text())["eos_token_id"]
    messages = [{"role": "user", "content": QUESTION}]
    body = {"model": "pruned", "messages": messages, "temperature": 0, "logprobs": True, "top_logprobs": 5}
    body.update({"max_tokens": 12, "min_tokens": 3, "logit_bias": {str(eos): 100}} if ends else {"max_tokens": 3})
    recorded = post(gateway, "/v1/chat/completions", body)
    assert recorded["choices"][0]["finish_reason"] == ("stop" if ends else "length"), recorded["choices"][0]
    prompt = Prompt(messages=tuple(messages))
    generation = asyncio.run(generate(Recorded(recorded), prompt, 12))
    scored = post(
        gateway, "/v1/chat/completions", {**base_check_request(generation.raw_text, messages), "model": "base"}
    )
    tokens = answer_logprobs(scored, generation.raw_text, prompt_tokens=generation.prompt_tokens)
    values = base_check_values(
        scored, generation.raw_text, answer_ended(generation.finish_reason), prompt_tokens=generation.prompt_tokens
    )
    assert tokens is not None and values is not None
    assert values[: len(tokens)] == tokens and len(values) == len(tokens) + ends
    if ends:
        assert -20.0 <= values[-1] <= 0.0

    async def evaluators_signals():
        async with EndpointClient(gateway.url, "base", api_key=gateway.api_key, concurrency=1) as client:
            return await base_answer_signals(client, prompt, generation)

    ours = asyncio.run(evaluators_signals())
    assert ours["base_mean_logprob"] == pytest.approx(sum(values) / len(values), abs=1e-5)
    assert ours["base_min_logprob"] == pytest.approx(min(values), abs=1e-5)
    for name, value in ours.items():
        assert recorded["reliability"]["signals"][name] == pytest.approx(value, abs=1e-5), name
