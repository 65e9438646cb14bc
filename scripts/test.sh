#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# Lint, format and type checks (config in pyproject.toml: ruff over the project's packages, mypy over moeprune/
# and app/).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
