"""Gateway settings: API keys from the environment and from a file."""

from __future__ import annotations

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
