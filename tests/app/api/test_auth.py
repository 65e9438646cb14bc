"""API keys fail closed: the matrix of paths and headers over a real uvicorn socket, the start-up
refusal, key reload (revocation without restart), /ready without leaks, auth before the body.

No engine is needed: the gateway routes to a `url:` variant nobody listens on.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml
from fastapi import Request

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from moeprune.errors import UserError
from testkit.vllm_server import free_port
from tests.app.loopback_http import exchange, request_head, serve_in_thread

KEY = "k-7f3a9c1e5b2d4680aa11"
EVAL_KEY = "eval-0c8e2b6a94d1f357"
NOWHERE = {"variants": {"remote": {"url": "http://127.0.0.1:9"}}}
JSON = {"content-type": "application/json"}


def gateway(**settings):
    app = create_app(Settings(**settings), parse_config(NOWHERE))

    # A probe route: what the middleware told the request about its caller.
    @app.get("/v1/whoami")
    async def whoami(request: Request) -> dict:
        return {"key_id": request.state.key_id, "evaluation_key": request.state.evaluation_key}

    return app


async def call(app, method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.request(method, path, headers=headers, **kwargs)


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def port():
    """The gateway with one key, served by uvicorn's default HTTP implementation (what `moeprune serve` runs)."""
    with serve_in_thread(gateway(api_keys=KEY), http="auto") as bound:
        yield bound


# Every one of these reaches an app route, a redirect, the docs or a 404/405 when the key is not checked first.
UNAUTHENTICATED = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/"),
    ("GET", "/V1/MODELS"),
    ("GET", "//v1/models"),
    ("GET", "/v1//models"),
    ("GET", "/v1/%6Dodels"),
    ("GET", "/v1/models%2F"),
    ("GET", "/v1/models?x=/health"),
    ("HEAD", "/v1/models"),
    ("OPTIONS", "/v1/models"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/experiments/ab"),
    ("GET", "/v1/experiments/.."),
    ("GET", "/v1/experiments/%2e%2e/%2e%2e/health"),
    ("POST", "/v1/feedback"),
    ("POST", "/v1/admin/reload"),
    ("GET", "/health/../v1/models"),
    ("GET", "/health/"),
    ("GET", "/HEALTH"),
    ("GET", "/ready/"),
    ("GET", "/health%2F"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/nonexistent"),
    ("GET", "http://127.0.0.1/v1/models"),
]


@pytest.mark.parametrize("method, target", UNAUTHENTICATED)
def test_every_path_but_the_public_ones_needs_the_key(port, method, target):
    response = exchange(port, request_head(method, target, {"Content-Length": "0"}))
    assert response.status == 401, (method, target, response.status, response.body[:200])
    assert response.headers["www-authenticate"] == "Bearer"
    if method != "HEAD":
        assert b'"invalid_api_key"' in response.body


REFUSED_HEADERS = [
    [],  # no header at all
    [("Authorization", KEY)],
    [("Authorization", "Bearer")],
    [("Authorization", "Bearer ")],
    [("Authorization", "Bearer wrong-key")],
    [("Authorization", f"Bearer {KEY[:-1]}")],
    [("Authorization", f"Bearer {KEY}{KEY}")],
    [("Authorization", f"Bearer {KEY} extra")],
    [("Authorization", f"Token {KEY}")],
    [("Authorization", "Basic " + base64.b64encode(f"{KEY}:".encode()).decode())],
    [("Authorization", "Basic " + base64.b64encode(f":{KEY}".encode()).decode())],
    [("Authorization", f"Bearer {KEY}"), ("Authorization", "Bearer wrong-key")],  # ambiguous: refused
    [("X-Api-Key", KEY)],
]


@pytest.mark.parametrize("headers", REFUSED_HEADERS, ids=range(len(REFUSED_HEADERS)))
def test_anything_but_one_valid_bearer_key_is_refused(port, headers):
    assert exchange(port, request_head("GET", "/v1/models", headers)).status == 401


@pytest.mark.parametrize("value", [f"Bearer {KEY}", f"bearer {KEY}", f"BEARER {KEY}", f"Bearer   {KEY}   "])
def test_a_valid_key_is_accepted_in_any_scheme_case_and_spacing(port, value):
    # RFC 7235: the scheme is case-insensitive; this is not a hole, the key is still checked.
    response = exchange(port, request_head("GET", "/v1/models", [("Authorization", value)]))
    assert response.status == 200 and b'"remote"' in response.body


def test_with_the_key_the_docs_still_work(port):
    assert exchange(port, request_head("GET", "/openapi.json", bearer())).status == 200


def test_public_probes_answer_without_a_key_and_say_only_booleans(port):
    assert exchange(port, request_head("GET", "/health")).status == 200
    assert exchange(port, request_head("GET", "/metrics")).status == 200
    ready = exchange(port, request_head("GET", "/ready"))
    assert ready.status == 503  # nobody listens at the variant's URL
    assert httpx.Response(200, content=ready.body).json() == {"ready": False, "auth_required": True}


@pytest.mark.parametrize(
    "setting, paths", [("health_require_key", ["/health", "/ready"]), ("metrics_require_key", ["/metrics"])]
)
async def test_probes_can_require_the_key_too(setting, paths):
    app = gateway(api_keys=KEY, **{setting: True})
    for path in paths:
        assert (await call(app, "GET", path)).status_code == 401
        assert (await call(app, "GET", path, bearer())).status_code in (200, 503)


async def test_ready_shows_details_only_to_a_valid_key():
    app = gateway(api_keys=KEY)
    backend = app.state.gateway.backends["remote"]
    backend.last_error = "engine failed to start: /srv/models/secret-ckpt --port 8101; tail: Traceback ..."
    anonymous = await call(app, "GET", "/ready")
    assert anonymous.status_code == 503
    assert anonymous.json() == {"ready": False, "auth_required": True}
    assert "secret-ckpt" not in anonymous.text and "remote" not in anonymous.text
    wrong = await call(app, "GET", "/ready", bearer("nope"))
    assert "variants" not in wrong.json()
    trusted = await call(app, "GET", "/ready", bearer())
    assert trusted.json()["variants"][0]["variant"] == "remote"
    assert "secret-ckpt" in trusted.json()["variants"][0]["error"]


async def test_the_key_is_checked_before_any_byte_of_the_body_is_read():
    app = gateway(api_keys=KEY)
    received = []
    sent = []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b'{"model": "remote", "prompt": "x"}', "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/completions",
        "raw_path": b"/v1/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gateway"), (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 401
    assert received == []


def test_an_unauthenticated_body_is_never_waited_for(port):
    """Headers promising a body that never comes: 401 at once, not after the body (or a timeout)."""
    started = time.monotonic()
    response = exchange(port, request_head("POST", "/v1/completions", {**JSON, "Content-Length": "60000"}), timeout=3)
    assert response.status == 401 and time.monotonic() - started < 2


async def test_request_identity_for_per_key_limits_and_evaluation_access():
    app = gateway(api_keys=KEY, evaluation_api_keys=EVAL_KEY)
    ordinary = (await call(app, "GET", "/v1/whoami", bearer())).json()
    assert ordinary == {"key_id": hashlib.sha256(KEY.encode()).hexdigest()[:16], "evaluation_key": False}
    evaluation = (await call(app, "GET", "/v1/whoami", bearer(EVAL_KEY))).json()
    assert evaluation["evaluation_key"] is True and evaluation["key_id"] != ordinary["key_id"]
    key_less = gateway()
    on_loopback = (await call(key_less, "GET", "/v1/whoami")).json()
    assert on_loopback == {"key_id": "anonymous", "evaluation_key": True}
    assert (await call(key_less, "GET", "/ready")).json()["variants"][0]["variant"] == "remote"


def test_keys_are_kept_only_as_digests(tmp_path):
    from app.api.auth import KeyStore

    keys_file = tmp_path / "keys"
    keys_file.write_text("file-key-4c1d9e\n")
    store = KeyStore(frozenset({"env-key-9b2f7a"}), frozenset({"eval-key-33aa81"}), keys_file)
    held = repr([vars(store), *(vars(entry) for entry in store._static + store._file_entries)])
    for key in ("env-key-9b2f7a", "eval-key-33aa81", "file-key-4c1d9e"):
        assert key not in held
        assert store.lookup(key) is not None


async def test_keys_file_is_re_read_so_a_key_is_revoked_without_a_restart(tmp_path):
    keys_file = tmp_path / "api_keys"
    keys_file.write_text("# clinical app\nkey-one\n")
    app = gateway(api_keys_file=keys_file)
    assert (await call(app, "GET", "/v1/models", bearer("key-one"))).status_code == 200
    keys_file.write_text("# rotated\nkey-two-rotated\n")  # edited in place
    assert (await call(app, "GET", "/v1/models", bearer("key-one"))).status_code == 401
    assert (await call(app, "GET", "/v1/models", bearer("key-two-rotated"))).status_code == 200
    # Replaced atomically (how Kubernetes updates a mounted Secret) with a file that revokes everything:
    # the gateway stays closed, it does not fall back to open.
    staged = tmp_path / "staged"
    staged.write_text("# everything revoked\n")
    os.replace(staged, keys_file)
    for key in ("key-one", "key-two-rotated"):
        assert (await call(app, "GET", "/v1/models", bearer(key))).status_code == 401
    assert (await call(app, "GET", "/v1/models")).status_code == 401
    keys_file.unlink()  # unreadable: no file key works, still closed
    assert (await call(app, "GET", "/v1/models", bearer("key-two-rotated"))).status_code == 401
    keys_file.write_text("key-three\n")
    assert (await call(app, "GET", "/v1/models", bearer("key-three"))).status_code == 200
    assert (await call(app, "GET", "/ready")).json()["auth_required"] is True


def test_a_keys_file_without_keys_is_a_clear_error(tmp_path):
    keys_file = tmp_path / "api_keys.txt"
    keys_file.write_text("# Copy to api_keys.txt and put one API key per line.\n\n")
    with pytest.raises(UserError, match="holds no keys"):
        gateway(api_keys_file=keys_file)
    with pytest.raises(UserError, match="holds no keys"):
        Settings(api_keys_file=keys_file).api_key_set()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gateway.internal"])
def test_no_keys_on_a_non_loopback_host_refuses_to_start(host):
    with pytest.raises(UserError, match=f"refusing to serve on {host} without API keys"):
        gateway(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_no_keys_on_loopback_is_allowed(host):
    gateway(host=host)


async def test_explicitly_unauthenticated_is_logged_and_reported_and_gets_no_evaluation_access(caplog):
    with caplog.at_level(logging.WARNING, logger="moeprune.auth"):
        app = gateway(host="0.0.0.0", allow_unauthenticated=True)
    assert any("WITHOUT authentication" in record.getMessage() for record in caplog.records)
    ready = (await call(app, "GET", "/ready")).json()
    assert ready["auth_required"] is False and "variants" not in ready
    assert (await call(app, "GET", "/v1/whoami")).json() == {"key_id": "anonymous", "evaluation_key": False}


def test_moeprune_serve_refuses_to_start_open(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is not loopback and is on no interface here, so even a gateway that
    # wrongly tried to serve could not listen on the network: the test itself never opens anything.
    config = tmp_path / "variants.yaml"
    config.write_text(yaml.safe_dump(NOWHERE))
    env = {name: value for name, value in os.environ.items() if not name.startswith("MOEPRUNE_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "moeprune.cli",
            "serve",
            "--config",
            str(config),
            "--host",
            "192.0.2.1",
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to serve on 192.0.2.1 without API keys" in result.stderr
    assert "MOEPRUNE_API_KEYS_FILE" in result.stderr and "Traceback" not in result.stderr
