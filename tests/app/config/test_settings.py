"""Gateway settings: API keys from the environment and from a file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.config.settings import Settings
from moeprune.errors import UserError


def test_keys_from_env_and_file_are_combined(tmp_path, monkeypatch):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# clinical apps\nkey-b\n\n  key-c  \n")
    monkeypatch.setenv("MOEPRUNE_API_KEYS", "key-a, ")
    monkeypatch.setenv("MOEPRUNE_API_KEYS_FILE", str(keys_file))
    assert Settings().api_key_set() == {"key-a", "key-b", "key-c"}


def test_no_keys_by_default_and_missing_file_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MOEPRUNE_API_KEYS", raising=False)
    assert Settings().api_key_set() == frozenset()
    with pytest.raises(UserError, match="API keys file"):
        Settings(api_keys_file=tmp_path / "missing").api_key_set()


def test_a_bad_setting_from_the_environment_is_one_clear_error(monkeypatch, tmp_path):
    from app.config.settings import load_settings

    monkeypatch.setenv("MOEPRUNE_WORKERS", "0")
    monkeypatch.setenv("MOEPRUNE_PORT", "abc")
    with pytest.raises(UserError) as caught:
        load_settings(config_path=tmp_path / "variants.yaml")
    message = str(caught.value)
    assert message.startswith("invalid gateway setting: ")
    assert "port (MOEPRUNE_PORT): Input should be a valid integer" in message and "(got 'abc')" in message
    assert "workers (MOEPRUNE_WORKERS): Input should be greater than or equal to 1 (got '0')" in message


def test_moeprune_serve_reports_a_bad_environment_setting_without_a_traceback(tmp_path):
    (tmp_path / "variants.yaml").write_text("variants:\n  a: {url: 'http://127.0.0.1:9'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "moeprune.cli", "serve", "--config", str(tmp_path / "variants.yaml")],
        env={**os.environ, "MOEPRUNE_PORT": "abc"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "port (MOEPRUNE_PORT)" in done.stderr
