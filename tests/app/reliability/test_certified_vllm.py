"""Certified flags on real vLLM CPU answers: the gateway's `p_wrong` is the evaluators'; a card is bound to its weights.

An in-process gateway reaches the session's real engines (tests/app/conftest.py) as `url:`
variants, with a report card whose reliability section holds a p_wrong model over the token
signals; the official `openai` client asks it. The response's `p_wrong` must equal
`RiskModel.p_wrong` of the signals the evaluators compute (`compute_signals`) from the very
logprobs the response returned, and its certificate the card's. The weights binding is checked
on the real pruned checkpoint (a managed variant; its engine is never started).
"""

from __future__ import annotations

import contextlib
import hashlib
import json

import openai
import pytest

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from moeprune.errors import UserError
from moeprune.formats.hashing import weights_digest
from moeprune.reliability.risk_model import RiskModel
from moeprune.reliability.signals import compute_signals
from tests.support.loopback import served, wait_until
from tests.support.report_cards import card, domain_entry

pytestmark = pytest.mark.slow

# Four token signals, each standardised, then an isotonic map read with interpolation: every step of predict runs.
MODEL = {
    "features": ["mean_logprob", "mean_margin", "answer_tokens", "mean_entropy"],
    "means": [-1.0, 1.0, 1.5, 1.5],
    "scales": [1.0, 1.0, 0.7, 0.5],
    "coef": [-1.1, -0.4, 0.3, 0.8],
    "intercept": -0.4,
    "iso_x": [0.05, 0.3, 0.6, 0.95],
    "iso_y": [0.02, 0.11, 0.42, 0.9],
}
QUESTION = "Which organ does hepatitis affect?"


@pytest.fixture
def card_file(tmp_path):
    path = tmp_path / "report_card.json"
    path.write_text(json.dumps(card("pruned", {"all": domain_entry(model=MODEL, threshold=0.35)})))
    return path


@contextlib.asynccontextmanager
async def certified_gateway(running, card_path):
    base_url, base_key = running.engines["base"]
    pruned_url, pruned_key = running.engines["pruned"]
    config = parse_config(
        {
            "variants": {
                "base": {"url": base_url, "api_key_env": base_key, "served_model_name": "base"},
                "pruned": {
                    "url": pruned_url,
                    "api_key_env": pruned_key,
                    "served_model_name": "pruned",
                    "base": "base",
                    "report_card": str(card_path),
                },
            }
        }
    )
    app = create_app(Settings(health_interval_s=0.2, max_tokens_limit=256), config)
    async with served(app) as url:
        backends = app.state.gateway.backends
        if not await wait_until(lambda: all(b.up for b in backends.values()), timeout=30):
            raise RuntimeError({name: b.last_error for name, b in backends.items()})
        yield url


def evaluators_p_wrong(logprobs_content) -> float:
    tokens = [entry.logprob for entry in logprobs_content]
    tops = [[alt.logprob for alt in entry.top_logprobs] for entry in logprobs_content]
    return RiskModel.from_dict(MODEL).p_wrong(compute_signals(tokens, tops))


async def test_p_wrong_and_certificate_equal_the_evaluators_for_the_same_answer(gateway, card_file, monkeypatch):
    for name, value in gateway.engine_keys.items():
        monkeypatch.setenv(name, value)
    async with certified_gateway(gateway, card_file) as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        raw = await client.chat.completions.with_raw_response.create(
            model="pruned",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=8,
            temperature=0,
            logprobs=True,
            top_logprobs=5,
        )
        completion = raw.parse()
        stream = await client.chat.completions.create(
            model="pruned",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=8,
            temperature=0,
            logprobs=True,
            top_logprobs=5,
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    reliability = completion.model_extra["reliability"]
    p_wrong = evaluators_p_wrong(completion.choices[0].logprobs.content)
    assert reliability["p_wrong"] == p_wrong  # bit for bit: one implementation on both sides
    assert reliability["above_risk"] == (p_wrong > 0.35)
    assert ("above_risk" in reliability["flags"]) == reliability["above_risk"]
    assert raw.headers["x-moe-reliability-flags"] == (",".join(reliability["flags"]) or "none")
    spec = json.loads(card_file.read_text())["reliability"]["domains"]["all"]["certificate"]
    assert reliability["certificate"] == {
        "status": "certified",
        "alpha": spec["alpha"],
        "delta": spec["delta"],
        "domain": "all",
        "coverage": spec["coverage"],
        "threshold": 0.35,
        "n_calibration": spec["n_calibration"],
        "card_sha256": hashlib.sha256(card_file.read_bytes()).hexdigest(),
    }
    assert reliability["signals"]["base_mean_logprob"] < 0  # the base check ran by default (`base` is named)
    streamed = [
        entry
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content
    ]
    assert chunks[-1].model_extra["reliability"]["p_wrong"] == evaluators_p_wrong(streamed) == p_wrong


def test_a_card_is_bound_to_the_real_checkpoints_weights(gateway, tmp_path):
    pruned = gateway.dirs["pruned"]
    served_digest = weights_digest(pruned)  # every weight file read, not pruning.json's record

    def config(digest: str):
        path = tmp_path / f"card-{digest[:8]}.json"
        path.write_text(json.dumps(card("pruned", {"all": domain_entry(model=MODEL)}, weights_sha256=digest)))
        return parse_config({"variants": {"pruned": {"model": str(pruned), "report_card": str(path)}}})

    app = create_app(Settings(), config(served_digest))
    assert app.state.gateway.certification["pruned"].certificates.weights == "verified"
    other = weights_digest(gateway.dirs["base"])
    with pytest.raises(UserError, match=f"weights_sha256 is {other}, the checkpoint's is {served_digest}"):
        create_app(Settings(), config(other))
