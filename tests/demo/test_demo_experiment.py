"""demo-ab has a control and a decision rule, and the scripted traffic makes its verdict appear (issue 22).

The end-to-end test runs the real gateway in-process (real uvicorn, real SQLite) over stub engines whose
answers are known: the base and one arm always give the gold option, the other arm never does.
"""

from __future__ import annotations

import asyncio
import json

import yaml

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from demo import traffic
from demo.serving import CONTROL, DECISION_RULE, EXPERIMENT, write_variants_yaml
from demo.variants import Variant
from tests.support.fake_engine import EngineConfig, FakeEngine, one_token
from tests.support.loopback import serve_app, served, wait_until

ITEMS = [
    {
        "question": f"Which class does drug {i} belong to?",
        "answer": "A",
        "options": {"A": "antibiotic", "B": "sedative", "C": "diuretic", "D": "I don't know"},
    }
    for i in range(20)
]


def letter_engine(letter: str) -> FakeEngine:
    """An OpenAI-shaped engine that answers every question with one letter, confidently."""
    return FakeEngine(EngineConfig(answer=one_token(letter, -0.01)))


def test_the_demo_experiment_has_a_control_and_a_decision_rule_the_gateway_accepts(tmp_path):
    variants = {name: Variant(name, tmp_path / name) for name in ("base", "gate-25", "gate-50")}
    for variant in variants.values():
        variant.model_dir.mkdir()
    path = write_variants_yaml(tmp_path / "variants.yaml", variants, ["gate-25", "gate-50"], {})
    written = yaml.safe_load(path.read_text())
    experiment = written["experiments"][EXPERIMENT]
    assert experiment["control"] == CONTROL == "base"
    assert experiment["decide"] == DECISION_RULE and "outcome" in experiment["decide"]
    assert set(experiment["arms"]) == {"base", "gate-25", "gate-50"}
    config = parse_config(written, str(path))  # the gateway's own validation (control must be an arm, ...)
    assert config.experiments[EXPERIMENT].control == "base"


async def test_scripted_traffic_makes_a_verdict_appear(tmp_path):
    with (
        serve_app(letter_engine("A")) as base,
        serve_app(letter_engine("A")) as keeps,
        serve_app(letter_engine("B")) as loses,
    ):
        urls = {"base": base, "gate-25": keeps, "gate-50": loses}
        experiment = {"arms": {name: 33 for name in urls}, "control": CONTROL, "decide": DECISION_RULE}
        config = tmp_path / "variants.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "variants": {name: {"url": url} for name, url in urls.items()},
                    "experiments": {EXPERIMENT: experiment},
                }
            )
        )
        app = create_app(
            Settings(
                config_path=config, state_dir=tmp_path / "state", health_interval_s=0.2, experiment_flush_interval_s=0.1
            )
        )
        async with served(app) as url:
            gateway = app.state.gateway
            assert await wait_until(lambda: all(b.up for b in gateway.backends.values()), timeout=20)
            report = await asyncio.to_thread(traffic.run_traffic, url, 240, None, 8, ITEMS)
    arms = report["arms"]
    assert sum(arm["requests"] for arm in arms.values()) == 240
    assert all(arm["requests"] >= 30 for arm in arms.values()), "the sticky split should spread the users"
    assert arms["gate-50"]["decision"]["status"] == "inferior"
    assert arms["gate-25"]["decision"]["status"] in ("non_inferior", "inconclusive")
    assert "decision" not in arms["base"]
    lines = traffic.verdict_lines(report)
    assert any("gate-50" in line and "INFERIOR" in line for line in lines), lines
    assert any("base" in line and "the control" in line for line in lines), lines
    json.dumps(report)  # what `python -m demo.traffic` prints from is plain JSON


def test_the_shipped_sets_feed_the_traffic_both_domains_interleaved():
    items = traffic.load_items()
    assert len(items) == 300
    assert {items[0]["domain"], items[1]["domain"]} == {"biomedical", "general"}
    assert all(item["answer"] in item["options"] for item in items)
