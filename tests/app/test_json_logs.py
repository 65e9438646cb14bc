"""Every line the gateway logs is JSON: its own loggers, uvicorn's, and other libraries' warnings (issue 22)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import uvicorn
from starlette.applications import Starlette

from app.commands import serve as serve_command
from app.logs import UVICORN_LOGGERS, JsonFormatter, uvicorn_log_config
from testkit.vllm_server import free_port


def _saved_logging():
    names = ["", *UVICORN_LOGGERS]
    return {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate)
        for name in names
    }


def _restore(saved) -> None:
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


async def test_a_real_uvicorn_logs_only_json_lines():
    log, saved = io.StringIO(), _saved_logging()
    try:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                Starlette(), host="127.0.0.1", port=port, log_level="info", log_config=uvicorn_log_config(stream=log)
            )
        )
        server.install_signal_handlers = lambda: None
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        # A malformed request: uvicorn's own warning ("Invalid HTTP request received."), in plain text before.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()
        logging.getLogger("asyncio").warning("a library's warning")
        server.should_exit = True
        await task
    finally:
        _restore(saved)
    lines = [line for line in log.getvalue().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line, or this raises
    events = " | ".join(record["event"] for record in records)
    assert "Uvicorn running on" in events and "Invalid HTTP request" in events and "a library's warning" in events
    assert all("color_message" not in record and {"time", "level", "logger"} <= set(record) for record in records)


def test_moeprune_serve_starts_uvicorn_with_the_json_config(monkeypatch, tmp_path):
    seen = {}

    def fake_run(app, **kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    (tmp_path / "variants.yaml").write_text("variants: {r: {url: 'http://127.0.0.1:9'}}\n")
    serve_command.serve(tmp_path / "variants.yaml", "127.0.0.1", free_port())
    config = seen["log_config"]
    assert config["formatters"]["json"]["()"] is JsonFormatter
    assert config["loggers"]["uvicorn"]["handlers"] == ["json"] and config["root"]["handlers"] == ["json"]
