"""`url: https://...` engines: the gateway verifies the engine's certificate (its CA, its host name), always.

A real uvicorn serves the fake engine (tests/support/fake_engine.py) over TLS with a throwaway CA
(tests/app/tls_certs.py).
"""

from __future__ import annotations

import contextlib

import httpx
import pytest

from app.config.settings import Settings
from app.config.variants import load_config, parse_config
from app.main import create_app
from moeprune.errors import UserError
from testkit.vllm_server import free_port
from tests.app.tls_certs import make_pki
from tests.support.fake_engine import Answer, EngineConfig, FakeEngine
from tests.support.loopback import served, wait_until

pytestmark = pytest.mark.timeout(120)
COMPLETION = {"model": "stub", "prompt": "hi", "max_tokens": 4}
ANSWER = Answer(text=" done", pieces=(" hello", " world"))  # streamed, " hello world"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), names=("localhost",))


@contextlib.asynccontextmanager
async def tls_engine(pki):
    """The stub engine over TLS on 127.0.0.1 (certificate for `localhost` only); yields (port, engine)."""
    import uvicorn

    engine, port = FakeEngine(EngineConfig(answer=ANSWER)), free_port()
    config = uvicorn.Config(
        engine,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=str(pki.cert_file),
        ssl_keyfile=str(pki.key_file),
    )
    server = uvicorn.Server(config)
    import asyncio

    task = asyncio.create_task(server.serve())
    if not await wait_until(lambda: server.started or task.done(), timeout=20):
        raise RuntimeError("the TLS stub engine did not start")
    task.done() and task.result()
    try:
        yield port, engine
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def gateway_for(variant: dict):
    app = create_app(Settings(health_interval_s=0.2), parse_config({"variants": {"stub": variant}}))
    async with served(app) as url:
        yield url, app.state.gateway.backends["stub"]


async def test_a_completion_through_an_https_engine_verified_by_its_ca(pki):
    async with (
        tls_engine(pki) as (port, engine),
        gateway_for({"url": f"https://localhost:{port}", "tls": {"ca_file": str(pki.ca_file)}}) as (url, backend),
    ):
        assert await wait_until(lambda: backend.up, timeout=20), backend.last_error
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            for _ in range(3):  # the second and third reuse the pooled TLS connection
                response = await client.post("/v1/completions", json=COMPLETION)
                assert response.status_code == 200, response.text
                assert response.json()["choices"][0]["text"] == " done"
            streamed = await client.post("/v1/completions", json={**COMPLETION, "stream": True})
            assert streamed.status_code == 200 and "hello" in streamed.text and "[DONE]" in streamed.text
        assert len(engine.requests) == 4


@pytest.mark.parametrize("case", ["no_ca", "unrelated_ca", "host_mismatch"])
async def test_an_engine_certificate_the_gateway_cannot_verify_means_down_never_a_500(pki, case):
    async with tls_engine(pki) as (port, engine):
        variant = {
            "no_ca": {"url": f"https://localhost:{port}"},  # system trust store: the test CA is not in it
            "unrelated_ca": {"url": f"https://localhost:{port}", "tls": {"ca_file": str(pki.other_ca_file)}},
            # the right CA, but the certificate names localhost, not 127.0.0.1
            "host_mismatch": {"url": f"https://127.0.0.1:{port}", "tls": {"ca_file": str(pki.ca_file)}},
        }[case]
        async with gateway_for(variant) as (url, backend):
            assert await wait_until(lambda: "certificate" in (backend.last_error or ""), timeout=20), backend.last_error
            assert not backend.up
            expected = "IP address mismatch" if case == "host_mismatch" else "unable to get local issuer"
            assert expected in backend.last_error
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                response = await client.post("/v1/completions", json=COMPLETION)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "engine_unavailable" and "stub" in error["message"]
        assert engine.requests == []  # nothing was sent over a link the gateway could not verify


def config_error(variant: dict) -> str:
    with pytest.raises(UserError) as caught:
        create_app(Settings(), parse_config({"variants": {"stub": variant}}))
    return str(caught.value)


def test_tls_files_are_checked_at_start_and_errors_name_the_field(pki, tmp_path):
    url = "https://engine.example:8443"
    message = config_error({"url": url, "tls": {"ca_file": str(tmp_path / "missing.pem")}})
    assert "variants.stub.tls.ca_file" in message and "missing.pem" in message
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    message = config_error({"url": url, "tls": {"ca_file": str(garbage)}})
    assert "variants.stub.tls.ca_file" in message and "CA certificate" in message
    # a client certificate with a key that is not its own
    other_key = make_pki(tmp_path / "other").key_file
    message = config_error(
        {"url": url, "tls": {"ca_file": str(pki.ca_file), "cert_file": str(pki.cert_file), "key_file": str(other_key)}}
    )
    assert "variants.stub.tls.key_file" in message
    with pytest.raises(UserError, match="give `url: https://...`"):
        parse_config({"variants": {"stub": {"url": "http://engine:8000", "tls": {"ca_file": str(pki.ca_file)}}}})
    with pytest.raises(UserError, match="give `cert_file` too"):
        parse_config({"variants": {"stub": {"url": url, "tls": {"key_file": str(pki.key_file)}}}})


def test_tls_paths_are_relative_to_the_variants_file(pki, tmp_path):
    (tmp_path / "ca.pem").write_bytes(pki.ca_file.read_bytes())
    path = tmp_path / "variants.yaml"
    path.write_text("variants:\n  stub:\n    url: https://engine.example\n    tls: {ca_file: ca.pem}\n")
    assert load_config(path).variants["stub"].tls.ca_file == (tmp_path / "ca.pem").resolve()
