"""Start a real vLLM OpenAI server (the CPU build here) for a test, and always stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from app.engines.command import EngineSpec, launch_command, launch_environment
from app.engines.process import free_port  # noqa: F401  (tests and benches take it from here)


@contextlib.contextmanager
def vllm_server(model_dir: str | Path, scratch: str | Path, served_name: str = "tiny", timeout: float = 240, **engine):
    """Yield the base URL (`http://127.0.0.1:PORT`) of a vLLM server for model_dir."""
    spec = EngineSpec(model=str(model_dir), port=free_port(), served_name=served_name, **engine)
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    log_path = scratch / "engine.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            launch_command(spec),
            env=launch_environment(spec, scratch),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{spec.port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM not healthy after {timeout}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc, grace=30)


def stop_process_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group a server was started in, SIGKILL it after `grace` seconds, reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
