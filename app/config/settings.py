"""Gateway settings: where the variants file is, where to listen, keys and limits.

Read from the environment (prefix `MOEPRUNE_`) or passed in directly, in the
style of pydantic-settings: `Settings(config_path="variants.yaml", port=9000)`.
API keys come from `MOEPRUNE_API_KEYS` (comma-separated) and/or a file named by
`MOEPRUNE_API_KEYS_FILE` (one key per line, `#` comments allowed; re-read when
it changes, see app/api/auth.py).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from moeprune.errors import UserError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOEPRUNE_", extra="ignore")

    config_path: Path | None = Field(None, description="variants.yaml to serve")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # N > 1: N gateway processes accept on one socket the serve process binds; it alone owns the engines
    # (docs/gateway.md, "Worker processes"). 1 is the single-process gateway, unchanged.
    workers: int = Field(1, ge=1, le=64, description="gateway worker processes sharing the listening port")

    # Security (docs/gateway.md, "Security"): the gateway refuses to start without a key on a
    # non-loopback host unless `allow_unauthenticated` says so explicitly.
    api_keys: str = Field("", description="comma-separated API keys")
    api_keys_file: Path | None = Field(None, description="one key per line; re-read when the file changes")
    allow_unauthenticated: bool = Field(False, description="serve without keys on a non-loopback host")
    evaluation_api_keys: str = Field("", description="comma-separated keys that may use echo/prompt logprobs")
    metrics_require_key: bool = False
    health_require_key: bool = False

    # Limits. Admission counts sequences (prompts x n), not HTTP requests.
    max_request_bytes: int = Field(1_048_576, ge=1024)
    request_body_timeout_s: float = Field(30.0, gt=0, description="the whole request body must arrive within this")
    max_tokens_limit: int = Field(4096, ge=1)
    max_prompts_per_request: int = Field(32, ge=1, description="length of a completions prompt list")
    max_n: int = Field(16, ge=1)
    max_sequences_per_request: int = Field(64, ge=1, description="prompts x n of one request")
    max_in_flight_per_variant: int = Field(64, ge=1, description="sequences in flight per variant")
    max_in_flight_per_key: int = Field(32, ge=1, description="sequences in flight per API key, all variants")
    max_echo_prompt_chars: int = Field(32_768, ge=1, description="prompt size allowed with echo/prompt_logprobs")
    request_deadline_s: float = Field(300.0, gt=0, description="total time one request may take")
    send_timeout_s: float = Field(30.0, gt=0, description="how long a slow reader may block one write")
    shutdown_grace_s: float = Field(20.0, gt=0, description="graceful shutdown waits this long for open requests")

    # OpenTelemetry (app/spans.py): OTLP/HTTP traces URL; unset = no spans (falls back to
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Trace headers reach the engines either way.
    otlp_traces_endpoint: str | None = Field(None, description="e.g. http://collector:4318/v1/traces")

    # Upstream HTTP (to the engines). Keep-alive below vLLM's 5 s so the gateway closes first.
    upstream_timeout_s: float = Field(300.0, gt=0, description="read timeout: the longest gap between bytes")
    upstream_connect_timeout_s: float = Field(5.0, gt=0)
    upstream_write_timeout_s: float = Field(30.0, gt=0)
    upstream_pool_timeout_s: float = Field(10.0, gt=0)
    upstream_keepalive_s: float = Field(2.0, gt=0)

    # The extra engine calls of base_check / self_consistency: their own timeout and token cap.
    check_timeout_s: float = Field(20.0, gt=0)
    check_max_tokens: int = Field(64, ge=1)

    # Engines: a live engine failing /health for this long is killed and restarted.
    engine_hung_after_s: float = Field(30.0, gt=0)
    engine_log_max_bytes: int = Field(20 * 1024 * 1024, ge=4096, description="engine.log rotated beyond this")
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

    # Experiment state (docs/gateway.md, "Experiment statistics"): SQLite in the state dir, or PostgreSQL.
    state_dir: Path | None = Field(None, description="default: WORK_DIR/state, else ~/.local/state/moeprune")
    experiment_dsn: str | None = Field(None, description="postgresql://... shared by every replica (never logged)")
    experiment_dsn_file: Path | None = Field(None, description="a file holding the DSN (a mounted secret)")
    experiment_retention_s: float = Field(7 * 86400, gt=0, description="how long a completion id accepts feedback")
    experiment_retention_ids: int = Field(1_000_000, ge=1, description="most completion ids remembered")
    experiment_flush_interval_s: float = Field(1.0, gt=0, description="buffered writes go to the database this often")
    experiment_buffer_ids: int = Field(100_000, ge=1, description="ids buffered while the database is down")
    experiment_evaluate_interval_s: float = Field(5.0, gt=0, description="verdict gauges and guardrails")

    # Live re-certification (docs/gateway.md): served answers kept in memory for feedback to join.
    live_max_answers: int = Field(100_000, ge=1, description="most served answers remembered for feedback")
    live_retention_s: float = Field(7 * 86400, gt=0, description="how long a served answer accepts feedback")

    def static_api_keys(self) -> frozenset[str]:
        """Keys given in the environment (or directly): fixed for the gateway's life."""
        return split_keys(self.api_keys) | self.evaluation_key_set()

    def evaluation_key_set(self) -> frozenset[str]:
        """Keys that may use echo / prompt logprobs; each is also an ordinary valid key."""
        return split_keys(self.evaluation_api_keys)

    def api_key_set(self) -> frozenset[str]:
        """Every key configured now: the environment's and the keys file's (which must hold one)."""
        keys = self.static_api_keys()
        if self.api_keys_file is not None:
            keys |= read_keys_file(self.api_keys_file)
        return keys


def split_keys(text: str) -> frozenset[str]:
    return frozenset(key.strip() for key in text.split(",") if key.strip())


def read_keys_file(path: Path, allow_empty: bool = False) -> frozenset[str]:
    """One key per line, `#` comments. A file without keys is an error unless `allow_empty`
    (a reload may revoke every key in it; at start an empty file would mean an open gateway)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UserError(f"cannot read the API keys file {path}: {reason}; fix MOEPRUNE_API_KEYS_FILE") from exc
    keys = frozenset(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not keys and not allow_empty:
        raise UserError(
            f"the API keys file {path} holds no keys (only blank lines or # comments), which would "
            "leave the gateway open; put one key per line, e.g. "
            f"`python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >> {path}`"
        )
    return keys


def load_settings(**values) -> Settings:
    """Settings from `values` and the environment; a bad value is a UserError naming the setting, the
    environment variable that sets it, and what was wrong (not pydantic's traceback)."""
    from pydantic import ValidationError

    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:3]:
            field = str(error["loc"][0]) if error["loc"] else "(settings)"
            given = error.get("input")
            shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
            problems.append(f"{field} (MOEPRUNE_{field.upper()}): {error['msg']}{shown}")
        raise UserError("invalid gateway setting: " + "; ".join(problems)) from None
