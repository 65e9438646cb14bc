"""A gateway-only install: `moeprune serve` imports and serves with the `serve` extra alone.

A fresh virtual environment (no network: its site-packages holds links to the
already-installed files of exactly the distributions that the core
dependencies plus the `serve` extra of pyproject.toml pull in, by their
metadata) runs the gateway as a real process, which answers a chat completion
through a `url:` variant. torch, transformers, matplotlib and vLLM are not in
that environment, so any import of them on the serving path fails the test.
"""

from __future__ import annotations

import re
import subprocess
import time
import tomllib
import venv
from importlib import metadata
from pathlib import Path

import httpx
import pytest
import yaml

from testkit.vllm_server import free_port
from tests.evaluators.endpoints import endpoint

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "matplotlib", "numpy", "vllm")
KEY = "serve-only-key"


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirement_closure(requirements: list[str]) -> set[str]:
    """Distributions reachable from `requirements` through their installed metadata (no extras)."""
    seen, todo = set(), list(requirements)
    while todo:
        name = _name(todo.pop())
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            todo += [req for req in metadata.requires(name) or [] if "extra ==" not in req]
        except metadata.PackageNotFoundError:
            continue
    return seen


def serve_only_venv(where: Path, distributions: set[str]) -> Path:
    """A venv whose site-packages links only the installed files of `distributions`; returns its python."""
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    for name in distributions:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a marker-excluded dependency (another platform or Python)
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            source, link = Path(dist.locate_file(top)), site / top
            if source.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(source)
    return python


def test_the_gateway_serves_without_torch_transformers_or_matplotlib(tmp_path):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    closure = requirement_closure(project["dependencies"] + project["optional-dependencies"]["serve"])
    assert not closure & set(HEAVY), "the serve extra pulls a heavy package"
    python = serve_only_venv(tmp_path / "venv", closure)
    heavy = subprocess.run([python, "-c", "import torch"], capture_output=True, env={"PYTHONPATH": str(ROOT)})
    assert heavy.returncode != 0  # the environment really lacks torch
    with endpoint(lambda request: "Paris", model="remote-model") as (url, _):
        config = tmp_path / "variants.yaml"
        config.write_text(yaml.safe_dump({"variants": {"remote": {"url": url}}}))
        port, log = free_port(), tmp_path / "gateway.log"
        env = {"PATH": "/usr/bin:/bin", "MOEPRUNE_API_KEYS": KEY, "PYTHONPATH": str(ROOT)}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [python, "-m", "moeprune.cli", "serve", "--config", str(config), "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    if httpx.get(base + "/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            response = httpx.post(
                base + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json={"model": "remote", "messages": [{"role": "user", "content": "Capital?"}], "max_tokens": 4},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "Paris"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
