"""The project's version, written once (pyproject.toml) and read from the installed metadata."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "moe-prune-serve"


def package_version() -> str:
    """The installed distribution's version; `0+unknown` when run from a tree that was never installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"
