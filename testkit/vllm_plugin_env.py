"""TESTING ONLY: make vLLM load this checkout's plugin without reinstalling the package.

vLLM finds general plugins through `importlib.metadata.entry_points`, which scans every
`*.dist-info` on `sys.path`. A tiny dist-info declaring the same entry point as
pyproject.toml, on the engine's PYTHONPATH after this checkout's root, stands in for
`pip install -e .` (which the shared test environment must not run).
"""

from __future__ import annotations

from pathlib import Path

from moeprune.formats.uneven_serving import PLUGIN_GROUP, PLUGIN_NAME, PLUGIN_TARGET

REPO_ROOT = Path(__file__).resolve().parents[1]


def plugin_pythonpath(scratch: str | Path, *extra: str) -> str:
    """A PYTHONPATH for an engine: this checkout first (its moeprune), then a dist-info with the entry point."""
    site = Path(scratch) / "plugin-site"
    info = site / "moeprune_uneven_plugin-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: moeprune-uneven-plugin\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text(f"[{PLUGIN_GROUP}]\n{PLUGIN_NAME} = {PLUGIN_TARGET}\n")
    return ":".join([str(REPO_ROOT), str(site), *extra])
