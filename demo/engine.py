"""A real vLLM server for one demo variant, for the length of a `with` block."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from app.engines.command import EngineSpec
from app.engines.process import EngineProcess, EngineStartError

KV_CACHE_BYTES = 128 * 1024 * 1024  # plenty for a 3-layer model and short prompts
MAX_MODEL_LEN = 256
# The demo model is trained and saved in float32. vLLM would downcast it to
# bfloat16; keeping float32 gives the same answers as the trained model (measured:
# identical exact match to in-process transformers; bf16 differed by 0.7 points)
# and, on CPUs without bf16 instructions, evaluation took half the time.
DTYPE = "float32"


@contextlib.contextmanager
def running_engine(
    model_dir: str | Path, name: str, work_dir: str | Path, timeout: float = 300, live: set | None = None
):
    """Yield the base URL of a vLLM server serving model_dir as `name`; always stop it.

    The engine runs in a short temporary directory (vLLM's ZMQ socket paths must
    stay under 107 characters); its log is copied to work_dir/engine.log. While
    it runs it is in `live`, so an interrupted caller can stop it at once.
    """
    spec = EngineSpec(
        model=str(model_dir),
        port=0,
        served_name=name,
        kv_cache_bytes=KV_CACHE_BYTES,
        max_model_len=MAX_MODEL_LEN,
        dtype=DTYPE,
    )
    scratch = Path(tempfile.mkdtemp(prefix="moeprune-demo-"))
    engine = EngineProcess(name, spec, scratch)
    engine.launch()
    if live is not None:
        live.add(engine)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if not engine.running():
                raise EngineStartError(
                    f"vLLM for {name} exited while starting; log {engine.log_path}:\n{engine.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(engine.url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise EngineStartError(
                    f"vLLM for {name} not healthy after {timeout:.0f}s; log {engine.log_path}:\n{engine.log_tail()}"
                )
            time.sleep(0.5)
        yield engine.url
    finally:
        asyncio.run(engine.stop(grace=15))
        if live is not None:
            live.discard(engine)
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(engine.log_path, Path(work_dir) / "engine.log")
        shutil.rmtree(scratch, ignore_errors=True)
