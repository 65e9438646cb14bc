"""`moeprune serve --config variants.yaml [--host H] [--port P] [--workers N]`: run the gateway with uvicorn.

One process by default; `--workers N` (N > 1) makes this process the supervisor
of the engines and of N worker processes serving one port (app/workers).

Other code (the demo) starts the same gateway in-process with
`serve(config_path, host, port)`, or builds the app with `create_app(Settings(...))`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.config.settings import Settings, load_settings
from moeprune.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the variants file (variants.yaml)")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", default=None, type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--workers",
        default=None,
        type=int,
        help="gateway processes serving the port (default 1; MOEPRUNE_WORKERS; "
        "see docs/gateway.md, 'Worker processes')",
    )


def serve(
    config_path: str | Path, host: str | None = None, port: int | None = None, workers: int | None = None, **settings
) -> int:
    """Run the gateway until interrupted (blocks); engines are stopped on exit. The exit code."""
    if host is not None:
        settings["host"] = host
    if port is not None:
        settings["port"] = port
    if workers is not None:
        if workers < 1:
            raise UserError(f"--workers {workers}: give 1 (one process) or more worker processes")
        settings["workers"] = workers
    config = load_settings(config_path=Path(config_path), **settings)
    if config.workers > 1:
        from app.workers.serve import serve_workers

        return serve_workers(config)
    serve_one(config)
    return 0


def serve_one(config: Settings) -> None:
    """The single-process gateway: uvicorn runs the app in this process."""
    import uvicorn

    from app.logs import uvicorn_log_config
    from app.main import create_app

    app = create_app(config)
    try:
        # Open streams get shutdown_grace_s to finish; then uvicorn cancels them and the lifespan
        # stops the engines, so a graceful shutdown never waits forever.
        # uvicorn annotates timeout_graceful_shutdown as int, but only hands it to asyncio.wait_for (float seconds).
        uvicorn.run(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=config.shutdown_grace_s,  # type: ignore[arg-type]
            log_config=uvicorn_log_config(),
        )
    finally:
        # A second Ctrl-C makes uvicorn skip the lifespan shutdown: stop the engines here.
        # (Had the process been SIGKILLed, each engine's keeper stops it: app/engines/reaper.py.)
        supervisor = app.state.gateway.supervisor
        if supervisor is not None:
            supervisor.stop_blocking()


def run(args: argparse.Namespace) -> int:
    return serve(args.config, args.host, args.port, args.workers)
