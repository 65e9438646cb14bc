"""POST /v1/feedback against a real in-process gateway, real SQLite file and the real openai client."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import openai
import pytest

from tests.app.experiment_gateway import OTHER_AUTH, complete, experiment_gateway
from tests.support.fake_engine import ANSWER, FakeEngine
from tests.support.loopback import serve_app

EXPERIMENT = {"arms": {"base": 50, "pruned": 50}, "control": "base", "decide": {"outcome": {"margin": 0.1}}}
SECRET_PROMPT = "patient-name-Jane-Q-Doe-4711"


@pytest.fixture
def engines():
    with serve_app(FakeEngine()) as base, serve_app(FakeEngine()) as pruned:
        yield {"base": base, "pruned": pruned}


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code:
        assert error["code"] == code
    return error


async def test_feedback_from_an_openai_client_completion_is_counted_on_its_arm_once(tmp_path, engines):
    async with experiment_gateway(tmp_path, engines, EXPERIMENT) as (client, app):
        openai_client = openai.AsyncOpenAI(base_url=str(client.base_url) + "/v1", api_key="experiment-key-1")
        completion = await openai_client.chat.completions.create(
            model="ab",
            messages=[{"role": "user", "content": "Is aspirin an NSAID?"}],
            max_tokens=2,
            extra_headers={"x-session-id": "clinician-7"},
        )
        arm = completion.model
        first = await client.post("/v1/feedback", json={"id": completion.id, "label": "bad", "tags": ["triage"]})
        assert first.status_code == 200, first.text
        # Plus the live re-check's fields: every served completion is recorded (docs/gateway.md).
        assert first.json() == {
            "object": "feedback",
            "id": completion.id,
            "experiment": "ab",
            "variant": arm,
            "recorded": True,
            "duplicate": False,
            "domain": "all",
            "label_status": "new",
        }
        again = await client.post("/v1/feedback", json={"id": completion.id, "label": "good"})
        assert again.status_code == 200 and again.json()["duplicate"] is True
        report = (await client.get("/v1/experiments/ab")).json()
        assert report["arms"][arm]["outcome"] | {"ci95": None} == {
            "n": 1,
            "mean": 0.0,
            "ci95": None,
            "good": 0,
            "bad": 1,
            "scores": 0,
        }
        metrics = (await client.get("/metrics")).text
        assert f'moeprune_feedback_total{{experiment="ab",label="bad",variant="{arm}"}} 1.0' in metrics
        # Another key cannot rate this key's completion (nor learn that the id exists).
        other = await client.post("/v1/feedback", json={"id": completion.id, "score": 1.0}, headers=OTHER_AUTH)
        assert_openai_error(other, 404, "completion_not_found")


async def test_scores_and_streamed_completions(tmp_path, engines):
    async with experiment_gateway(tmp_path, engines, EXPERIMENT) as (client, app):
        ids = []
        for _ in range(3):
            async with client.stream(
                "POST", "/v1/completions", json={"model": "ab", "prompt": "hi", "stream": True, "max_tokens": 2}
            ) as response:
                body = (await response.aread()).decode()
            arm = response.headers["x-moe-variant"]
            ids.append((body.split('"id":"', 1)[1].split('"', 1)[0], arm))
        for (completion_id, arm), score in zip(ids, (0.25, 0.5, 1)):
            response = await client.post("/v1/feedback", json={"id": completion_id, "score": score})
            assert response.status_code == 200 and response.json()["variant"] == arm
        arms = (await client.get("/v1/experiments/ab")).json()["arms"]
        assert sum(arm["outcome"]["scores"] for arm in arms.values()) == 3
        assert sum(
            arm["outcome"]["mean"] * arm["outcome"]["n"] for arm in arms.values() if arm["outcome"]["n"]
        ) == pytest.approx(1.75)


async def test_unknown_and_expired_ids_are_404(tmp_path, engines):
    # Expired for both the experiment and the live re-check (each keeps ids for its own retention).
    async with experiment_gateway(tmp_path, engines, EXPERIMENT, experiment_retention_s=1.0, live_retention_s=1.0) as (
        client,
        app,
    ):
        assert_openai_error(
            await client.post("/v1/feedback", json={"id": "chatcmpl-never-served", "label": "good"}),
            404,
            "completion_not_found",
        )
        old = (await complete(client)).json()["id"]
        await asyncio.sleep(1.3)
        assert_openai_error(await client.post("/v1/feedback", json={"id": old, "label": "good"}), 404)
        fresh = (await complete(client)).json()["id"]
        assert (await client.post("/v1/feedback", json={"id": fresh, "label": "good"})).status_code == 200
        # A variant named directly is rated through live re-certification
        # (tests/app/reliability/test_live_recertification.py), and never by another key.
        direct = await client.post("/v1/completions", json={"model": "base", "prompt": "hi", "max_tokens": 2})
        assert_openai_error(
            await client.post("/v1/feedback", json={"id": direct.json()["id"], "label": "good"}, headers=OTHER_AUTH),
            404,
            "completion_not_found",
        )
        rated = await client.post("/v1/feedback", json={"id": direct.json()["id"], "label": "good"})
        assert rated.status_code == 200, rated.text
        assert rated.json() == {
            "object": "feedback",
            "id": direct.json()["id"],
            "variant": "base",
            "domain": "all",
            "recorded": True,
            "duplicate": False,
            "label_status": "new",
        }


MALFORMED = [
    ({"id": "x"}, None),  # no outcome
    ({"id": "x", "score": 0.5, "label": "good"}, None),  # two outcomes
    ({"id": "x", "score": 1.5}, "score"),
    ({"id": "x", "score": "0.5"}, "score"),
    ({"id": "x", "score": True}, "score"),
    ({"id": "x", "label": "meh"}, "label"),
    ({"id": "x", "label": "good", "comment": "the dose was wrong"}, "comment"),  # no free text accepted
    ({"id": "x", "label": "good", "tags": ["Has Spaces"]}, "tags.0"),
    ({"id": "x", "label": "good", "tags": [f"t{i}" for i in range(9)]}, "tags"),
    ({"id": "", "label": "good"}, "id"),
    ({"id": "a" * 129, "label": "good"}, "id"),
    ({"label": "good"}, "id"),
    (["not", "an", "object"], None),
]


async def test_malformed_feedback_is_a_400_in_openai_shape(tmp_path, engines):
    async with experiment_gateway(tmp_path, engines, EXPERIMENT) as (client, app):
        for body, param in MALFORMED:
            error = assert_openai_error(await client.post("/v1/feedback", json=body), 400, "invalid_feedback")
            assert error["param"] == param or param is None, (body, error)
            assert "dose" not in error["message"]  # the text of a refused field is not echoed


async def test_not_json_and_no_key(tmp_path, engines):
    async with experiment_gateway(tmp_path, engines, EXPERIMENT) as (client, app):
        not_json = await client.post("/v1/feedback", content=b"{nope", headers={"content-type": "application/json"})
        assert_openai_error(not_json, 400, "invalid_json")
        async with httpx.AsyncClient(base_url=client.base_url) as anonymous:
            assert_openai_error(await anonymous.post("/v1/feedback", json={"id": "x", "label": "good"}), 401)


async def test_no_prompt_or_answer_text_reaches_the_database(tmp_path, engines):
    async with experiment_gateway(tmp_path, engines, EXPERIMENT) as (client, app):
        for index in range(5):
            completion = await complete(client, session=f"s{index}", prompt=SECRET_PROMPT)
            assert completion.json()["choices"][0]["text"] == ANSWER
            await client.post("/v1/feedback", json={"id": completion.json()["id"], "score": 0.5, "tags": ["dosing"]})
        await client.get("/v1/experiments/ab")  # flushes
    database = tmp_path / "state" / "experiments.sqlite3"
    raw = b"".join(path.read_bytes() for path in database.parent.iterdir())
    assert SECRET_PROMPT.encode() not in raw and ANSWER.encode() not in raw
    with sqlite3.connect(database) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        values = {value for table in tables for row in connection.execute(f"SELECT * FROM {table}") for value in row}
        assert {"completions", "feedback", "arm_counters", "schema_migrations"} <= set(tables)
        columns = [row[1] for row in connection.execute("PRAGMA table_info(feedback)")]
    assert columns == ["id", "key_hash", "value", "label", "tags", "created_at"]
    assert "dosing" in values and "experiment-key-1" not in values  # keys only as digests
    assert not any(isinstance(value, str) and (SECRET_PROMPT in value or ANSWER in value) for value in values)
