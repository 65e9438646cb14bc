"""Gateway settings: where the variants file is, where to listen, keys and limits.

Read from the environment (prefix `MOEPRUNE_`) or passed in directly, in the
style of pydantic-settings: `Settings(config_path="variants.yaml", port=9000)`.
API keys come from `MOEPRUNE_API_KEYS` (comma-separated) and/or a file named by
`MOEPRUNE_API_KEYS_FILE` (one key per line, `#` comments allowed).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pruning.errors import UserError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOEPRUNE_", extra="ignore")

    config_path: Path | None = Field(None, description="variants.yaml to serve")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)

    # Security: keys are required for /v1/* as soon as any key is configured.
    api_keys: str = Field("", description="comma-separated API keys")
    api_keys_file: Path | None = None
    metrics_require_key: bool = False
    health_require_key: bool = False

    # Limits.
    max_request_bytes: int = Field(1_048_576, ge=1024)
    max_tokens_limit: int = Field(4096, ge=1)
    max_in_flight_per_variant: int = Field(64, ge=1)
    upstream_timeout_s: float = Field(300.0, gt=0)
    engine_start_timeout_s: float = Field(600.0, gt=0)
    engine_stop_grace_s: float = Field(15.0, gt=0)
    restart_backoff_s: float = Field(1.0, gt=0)
    restart_backoff_max_s: float = Field(30.0, gt=0)
    health_interval_s: float = Field(2.0, gt=0)

    # Self-consistency only judges answers up to this many completion tokens.
    short_answer_tokens: int = Field(32, ge=1)

    # Logging: JSON lines; prompt and completion text only when asked for.
    log_level: str = "INFO"
    log_text: bool = False

    # Where managed engines keep their logs and scratch files (default: a temp dir).
    work_dir: Path | None = None
    # The vLLM launch command, overriding both the YAML `launcher:` and the default.
    launcher: str | None = None

    def api_key_set(self) -> frozenset[str]:
        keys = {key.strip() for key in self.api_keys.split(",") if key.strip()}
        if self.api_keys_file is not None:
            try:
                lines = Path(self.api_keys_file).read_text().splitlines()
            except OSError as exc:
                raise UserError(f"cannot read the API keys file {self.api_keys_file}: {exc.strerror}; "
                                "fix MOEPRUNE_API_KEYS_FILE") from exc
            keys |= {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
        return frozenset(keys)
