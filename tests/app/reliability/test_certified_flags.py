"""Certified reliability flags through a real in-process gateway, in front of scripted chat engines (no vLLM).

Each behaviour here is one the gateway adds for issue 26: the certificate of the
variant and domain on every answer, `above_risk` / `uncertified`, abstentions apart from
flags, the live fallback, the base cross-check on by default, the certified cascade, what
/v1/models shows, and the start-up refusal of a card measured on other weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import zlib
from pathlib import Path

import httpx
import pytest

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from moeprune.errors import UserError
from moeprune.formats.domain_gate import BUCKETS, DomainGate
from moeprune.formats.hashing import weights_digest
from tests.support.fake_engine import Answer, EngineConfig, FakeEngine, Request, Rule, Token
from tests.support.loopback import served, wait_until
from tests.support.report_cards import RISK_MODEL, card, domain_entry

IN_DOMAIN_WORD = "cardiology"
# The scripted chat engines: the user's words pick the answer's token logprobs (the gateway forwards them
# untouched): "unsure" gives two tokens at -3.0 and -2.5 (a likely wrong answer), "abstain" answers "I don't
# know." confidently, anything else answers confidently (-0.01, -0.02). The answer's text names the engine, so
# a test sees who answered. A base-check request (`prompt_logprobs`) gets prompt logprobs of -0.5 for every token.
PROMPT_TOKENS = 7
CONFIDENT = [-0.01, -0.02]
UNSURE = [-3.0, -2.5]
BASE_CHECK_LOGPROB = -0.5


def scripted_chat(name: str) -> FakeEngine:
    def answer(request: Request) -> Answer:
        text, logprobs = (
            ("Perhaps the spleen", UNSURE)
            if "unsure" in request.text
            else ("I don't know.", CONFIDENT)
            if "abstain" in request.text
            else ("The liver", CONFIDENT)
        )
        content, half = f"{text} ({name})", len(f"{text} ({name})") // 2
        tokens = tuple(Token("t", lp, tuple((str(i), lp - i) for i in range(5))) for lp in logprobs)
        return Answer(text=content, tokens=tokens, pieces=(content[:half], content[half:]), prompt_tokens=PROMPT_TOKENS)

    def base_check(request: Request) -> Answer:
        tokens = PROMPT_TOKENS + max(1, len(request.body["messages"][-1]["content"].split()))
        return Answer(
            text="", finish_reason="length", prompt_tokens=tokens, prompt_logprobs=(BASE_CHECK_LOGPROB,) * (tokens - 1)
        )

    asks_prompt_logprobs = Rule(lambda request: request.body.get("prompt_logprobs") is not None, base_check)
    return FakeEngine(EngineConfig(model=name, answer=answer, rules=[asks_prompt_logprobs]))


BY_FORM = {
    "choice": {
        "n": 300,
        "n_wrong": 40,
        "n_certifying": 150,
        "n_unflagged": 90,
        "errors_unflagged": 2,
        "realised_error": 2 / 90,
        "error_upper": 0.07,
    },
    "free_text": {
        "n": 100,
        "n_wrong": 20,
        "n_certifying": 50,
        "n_unflagged": 20,
        "errors_unflagged": 1,
        "realised_error": 0.05,
        "error_upper": 0.22,
    },
}


def p_wrong_of(logprobs: list[float]) -> float:
    """The cards' model, written out: sigmoid(-2 - 2 * mean_logprob)."""
    return 1 / (1 + math.exp(2 + 2 * (sum(logprobs) / len(logprobs))))


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keyword_gate(path: Path) -> Path:
    """A domain gate that scores prompts with IN_DOMAIN_WORD near 1 and the rest near 0.05."""
    weights = [0.0] * BUCKETS
    weights[zlib.crc32(f"w:{IN_DOMAIN_WORD}".encode()) % BUCKETS] = 200.0
    return DomainGate(weights, bias=-3.0).save(path)


@pytest.fixture
async def certified(tmp_path):
    """(url, app, cards, engines) of a gateway whose variants cover every certificate case."""
    engines = {"base": scripted_chat("base"), "pruned": scripted_chat("pruned")}
    gate = keyword_gate(tmp_path / "domain_gate.json")
    cards = {
        "base": write(tmp_path / "base.json", card("base", {"all": domain_entry()})),
        "pruned": write(tmp_path / "pruned.json", card("pruned", {"all": {**domain_entry(), "by_form": BY_FORM}})),
        "uncertified": write(tmp_path / "uncertified.json", card("pruned", {"all": domain_entry("uncertified")})),
        "nosection": write(tmp_path / "nosection.json", card("pruned", None)),
        "gated": write(
            tmp_path / "gated.json",
            card(
                "pruned",
                {"in_domain": domain_entry(), "cross_domain": domain_entry("uncertified")},
                gate_sha256=sha256(gate),
                gate_threshold=0.5,
            ),
        ),
    }
    async with contextlib.AsyncExitStack() as stack:
        urls = {name: await stack.enter_async_context(served(engine)) for name, engine in engines.items()}
        pruned = {"url": urls["pruned"], "served_model_name": "pruned"}
        variants = {
            "base": {"url": urls["base"], "served_model_name": "base", "report_card": str(cards["base"])},
            "pruned": {**pruned, "base": "base", "report_card": str(cards["pruned"])},
            "nocheck": {**pruned, "base": "base", "base_check": False, "report_card": str(cards["pruned"])},
            "cascaded": {**pruned, "base": "base", "cascade": True, "report_card": str(cards["pruned"])},
            "uncertified": {**pruned, "report_card": str(cards["uncertified"])},
            "nosection": {**pruned, "report_card": str(cards["nosection"])},
            # Routing threshold 0: every prompt stays on the variant; the certificate splits at the card's 0.5.
            "gated": {
                **pruned,
                "report_card": str(cards["gated"]),
                "guard": {"domain_gate": {"file": str(gate), "fallback": "base", "threshold": 0.0}},
            },
        }
        app = create_app(Settings(health_interval_s=0.2, max_tokens_limit=256), parse_config({"variants": variants}))
        url = await stack.enter_async_context(served(app))
        backends = app.state.gateway.backends
        assert await wait_until(lambda: all(b.up for b in backends.values()), timeout=20)
        yield url, app, cards, engines


async def ask(url: str, model: str, text: str, **extra) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            url + "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8, **extra},
        )
    assert response.status_code == 200, response.text
    return response


def card_certificate(path: Path, domain: str = "all") -> dict:
    spec = json.loads(path.read_text())["reliability"]["domains"][domain]["certificate"]
    return {
        "status": spec["status"],
        "alpha": spec["alpha"],
        "delta": spec["delta"],
        "domain": domain,
        "coverage": spec["coverage"],
        "threshold": spec["threshold"],
        "n_calibration": spec["n_calibration"],
        "card_sha256": sha256(path),
    }


async def test_a_low_risk_answer_is_unflagged_and_carries_its_certificate(certified):
    url, app, cards, _ = certified
    response = await ask(url, "pruned", "Which organ does hepatitis affect?")
    reliability = response.json()["reliability"]
    assert reliability["flags"] == [] and response.headers["x-moe-reliability-flags"] == "none"
    assert reliability["p_wrong"] == p_wrong_of(CONFIDENT) < 0.5
    assert reliability["above_risk"] is False and reliability["abstained"] is False
    assert reliability["domain"] == "all"
    assert reliability["certificate"] == card_certificate(cards["pruned"])


async def test_a_high_risk_answer_is_flagged_above_risk_in_body_and_header(certified):
    url, _, _, _ = certified
    response = await ask(url, "pruned", "unsure: which organ?")
    reliability = response.json()["reliability"]
    assert reliability["p_wrong"] == p_wrong_of(UNSURE) > 0.5
    assert reliability["above_risk"] is True and "above_risk" in reliability["flags"]
    assert "uncertified" not in reliability["flags"]
    assert response.headers["x-moe-reliability-flags"] == ",".join(reliability["flags"])


async def test_an_uncertified_domain_flags_even_a_confident_answer(certified):
    url, _, cards, _ = certified
    reliability = (await ask(url, "uncertified", "Which organ does hepatitis affect?")).json()["reliability"]
    assert "uncertified" in reliability["flags"] and reliability["above_risk"] is False
    assert reliability["certificate"] == card_certificate(cards["uncertified"])
    assert reliability["certificate"]["status"] == "uncertified"


async def test_a_card_without_a_reliability_section_means_uncertified_and_no_certificate(certified):
    url, _, _, _ = certified
    response = await ask(url, "nosection", "Which organ does hepatitis affect?")
    reliability = response.json()["reliability"]
    assert reliability["certificate"] is None and reliability["p_wrong"] is None
    assert reliability["flags"] == ["uncertified"] and response.headers["x-moe-reliability-flags"] == "uncertified"


async def test_an_abstention_is_not_a_flag(certified):
    url, _, _, _ = certified
    reliability = (await ask(url, "pruned", "abstain: who discovered Zorblaxin?")).json()["reliability"]
    assert reliability["abstained"] is True
    assert "refusal" not in reliability["flags"] and reliability["flags"] == []


async def test_live_fallback_flags_every_answer_of_that_variant_and_domain(certified):
    url, app, _, _ = certified
    app.state.gateway.live.hold_fallback("pruned", "all", "test: feedback breached the bound")
    reliability = (await ask(url, "pruned", "Which organ does hepatitis affect?")).json()["reliability"]
    assert reliability["flags"] == ["uncertified"] and reliability["above_risk"] is False
    assert reliability["p_wrong"] == p_wrong_of(CONFIDENT)  # still computed: apps may rank by it
    other = (await ask(url, "nocheck", "Which organ does hepatitis affect?")).json()["reliability"]
    assert other["flags"] == []  # the fallback is per variant


async def test_every_served_answer_is_recorded_for_live_recertification(certified):
    url, app, cards, _ = certified
    body = (await ask(url, "pruned", "unsure: which organ?")).json()
    served_answer = app.state.gateway.live.served_answer(body["id"])
    assert served_answer.variant == "pruned" and served_answer.domain == "all"
    assert served_answer.p_wrong == body["reliability"]["p_wrong"] and served_answer.flagged is True
    assert served_answer.abstained is False and served_answer.card_sha256 == sha256(cards["pruned"])


async def test_a_stream_carries_the_certified_verdict_in_its_final_chunk(certified):
    url, app, cards, _ = certified
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            url + "/v1/chat/completions",
            json={"model": "pruned", "messages": [{"role": "user", "content": "unsure: which organ?"}], "stream": True},
        )
    events = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2])
    reliability = final["reliability"]
    assert final["choices"] == [] and reliability["p_wrong"] == p_wrong_of(UNSURE)
    assert "above_risk" in reliability["flags"] and reliability["certificate"] == card_certificate(cards["pruned"])
    assert app.state.gateway.live.served_answer(final["id"]).flagged is True


async def test_the_base_check_is_on_by_default_when_a_base_is_named_and_can_be_turned_off(certified):
    url, _, _, engines = certified
    checked = (await ask(url, "pruned", "Which organ does hepatitis affect?")).json()["reliability"]
    assert checked["signals"]["base_mean_logprob"] == BASE_CHECK_LOGPROB
    asked = len(engines["base"].requests)
    unchecked = (await ask(url, "nocheck", "Which organ does hepatitis affect?")).json()["reliability"]
    assert "base_mean_logprob" not in unchecked["signals"] and len(engines["base"].requests) == asked


async def test_the_cascade_serves_the_bases_answer_with_its_own_certificate_when_the_pruned_one_is_flagged(certified):
    url, app, cards, _ = certified
    kept = (await ask(url, "cascaded", "Which organ does hepatitis affect?")).json()
    assert kept["choices"][0]["message"]["content"].endswith("(pruned)") and "escalated" not in kept["reliability"]
    response = await ask(url, "cascaded", "unsure: which organ?")
    body = response.json()
    assert body["choices"][0]["message"]["content"].endswith("(base)")
    assert response.headers["x-moe-variant"] == "base" and body["model"] == "base"
    reliability = body["reliability"]
    assert reliability["escalated"] == {"from": "cascaded", "reason": "above_risk"}
    assert reliability["certificate"] == card_certificate(cards["base"])  # the base's own verdict
    assert app.state.gateway.live.served_answer(body["id"]).variant == "base"
    registry = app.state.gateway.metrics.registry
    assert (
        registry.get_sample_value("moeprune_cascade_escalations_total", {"variant": "cascaded", "flag": "above_risk"})
        == 1
    )


async def test_the_domain_is_the_cards_gate_split_and_picks_the_certificate(certified):
    url, _, cards, _ = certified
    inside = (await ask(url, "gated", f"A {IN_DOMAIN_WORD} question: which organ?")).json()["reliability"]
    assert inside["domain"] == "in_domain" and inside["flags"] == []
    assert inside["signals"]["gate_score"] >= 0.5
    assert inside["certificate"] == card_certificate(cards["gated"], "in_domain")
    outside = (await ask(url, "gated", "Which currency is used there?")).json()["reliability"]
    assert outside["domain"] == "cross_domain" and outside["signals"]["gate_score"] < 0.5
    assert outside["flags"] == ["uncertified"]


async def test_models_lists_each_variants_certificates(certified):
    url, _, cards, _ = certified
    async with httpx.AsyncClient(timeout=30) as client:
        listing = {m["id"]: m["moeprune"] for m in (await client.get(url + "/v1/models")).json()["data"]}
    pruned = listing["pruned"]
    assert pruned["base_check"] is True and pruned["cascade"] is False
    assert pruned["certificates"]["weights"] == "unverified"  # url: variants cannot be checked
    assert pruned["certificates"]["card_sha256"] == sha256(cards["pruned"])
    assert pruned["certificates"]["domains"]["all"]["n_calibration"] == 400
    assert pruned["certificates"]["domains"]["all"]["by_form"] == BY_FORM  # the mix the certificate bounds
    assert listing["uncertified"]["certificates"]["domains"]["all"]["by_form"] == {}  # a card without forms
    assert set(listing["gated"]["certificates"]["domains"]) == {"in_domain", "cross_domain"}
    assert listing["nosection"]["certificates"] is None
    assert listing["nocheck"]["base_check"] is False and listing["cascaded"]["cascade"] is True


def managed_config(model_dir: Path, card_path: Path) -> object:
    return parse_config({"variants": {"pruned": {"model": str(model_dir), "report_card": str(card_path)}}})


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    model_dir = tmp_path / "pruned-50"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"not really weights, but bytes with a digest")
    return model_dir


def test_a_card_from_other_weights_is_refused_at_start_naming_both_digests(tmp_path, checkpoint):
    wrong = "f" * 64
    card_path = write(tmp_path / "card.json", card("pruned", {"all": domain_entry()}, weights_sha256=wrong))
    with pytest.raises(UserError) as refused:
        create_app(Settings(), managed_config(checkpoint, card_path))
    message = str(refused.value)
    assert "variants.pruned" in message and wrong in message and weights_digest(checkpoint) in message
    assert "moeprune eval" in message


def test_a_card_from_the_served_weights_is_accepted_as_verified(tmp_path, checkpoint):
    card_path = write(
        tmp_path / "card.json", card("pruned", {"all": domain_entry()}, weights_sha256=weights_digest(checkpoint))
    )
    app = create_app(Settings(), managed_config(checkpoint, card_path))
    assert app.state.gateway.certification["pruned"].certificates.weights == "verified"


def test_a_malformed_reliability_section_stops_the_start_naming_the_field(tmp_path, checkpoint):
    broken_model = {**RISK_MODEL, "coef": [1.0, 2.0]}
    card_path = write(
        tmp_path / "card.json",
        card("pruned", {"all": domain_entry(model=broken_model)}, weights_sha256=weights_digest(checkpoint)),
    )
    with pytest.raises(UserError, match=r"reliability\.domains\.all\.model\.coef"):
        create_app(Settings(), managed_config(checkpoint, card_path))
    no_model = write(tmp_path / "no_model.json", card("pruned", {"all": domain_entry(model=None)}))
    with pytest.raises(UserError, match=r"reliability\.domains\.all\.model: a certified domain needs"):
        create_app(
            Settings(), parse_config({"variants": {"v": {"url": "http://127.0.0.1:9", "report_card": str(no_model)}}})
        )
    bad_alpha = card("pruned", {"all": domain_entry()})
    bad_alpha["reliability"]["alpha"] = 2
    with pytest.raises(UserError, match=r"reliability\.alpha"):
        create_app(
            Settings(),
            parse_config(
                {
                    "variants": {
                        "v": {
                            "url": "http://127.0.0.1:9",
                            "report_card": str(write(tmp_path / "bad_alpha.json", bad_alpha)),
                        }
                    }
                }
            ),
        )


def test_the_cascade_needs_a_base():
    with pytest.raises(UserError, match="cascade: true"):
        parse_config({"variants": {"v": {"url": "http://127.0.0.1:9", "cascade": True}}})


def test_a_card_split_by_another_domain_gate_is_refused_at_start(tmp_path):
    gate = keyword_gate(tmp_path / "domain_gate.json")
    card_path = write(tmp_path / "card.json", card("pruned", {"in_domain": domain_entry()}, gate_sha256="e" * 64))
    variant = {
        "url": "http://127.0.0.1:9",
        "report_card": str(card_path),
        "base": "base",
        "guard": {"domain_gate": {"file": str(gate), "fallback": "base"}},
    }
    with pytest.raises(UserError, match=f"variants.pruned: the domain gate .* \\(sha256 {sha256(gate)}\\) is not"):
        create_app(Settings(), parse_config({"variants": {"base": {"url": "http://127.0.0.1:9"}, "pruned": variant}}))
