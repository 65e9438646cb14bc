"""The variants file (`variants.yaml`): which models the gateway serves and how it splits traffic.

A variant is either *managed* (`model:` a checkpoint dir; the gateway starts a
vLLM server for it) or *remote* (`url:` of a vLLM server run elsewhere). An
experiment splits requests over variants by weight. Every error names the file
and the field (e.g. `variants.pruned-50.engine.kv_cache_bytes`).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.experiments.config import Decide, Guardrail, check_decision_settings
from app.guard.config import CERTIFIED_FLAGS, CascadeOptions, GuardOptions, check_guard
from app.telemetry.config import TelemetryOptions
from moeprune.errors import UserError

# A short allowlist of vLLM's --tool-call-parser names (vLLM 0.32 registers ~50): the families this project
# serves and the common ones, so a typo stops the start instead of the engine. hermes (Qwen3 and Hermes-style
# `<tool_call>{json}</tool_call>` templates) is the one the tests run; openai is gpt-oss's; qwen3_coder /
# qwen3_xml parse Qwen's XML-style calls; the rest are named after their model families.
ToolParser = Literal[
    "hermes",
    "openai",
    "qwen3_coder",
    "qwen3_xml",
    "llama3_json",
    "mistral",
    "deepseek_v3",
    "deepseek_v31",
    "glm45",
    "pythonic",
]
DEFAULT_TOOL_PARSER = "hermes"
# Engine arguments that `tools:` / `tool_parser:` own: given in engine.args, the gateway could not know
# whether the engine parses tool calls.
TOOL_ARGS = ("--enable-auto-tool-choice", "--tool-call-parser")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineOptions(Strict):
    """Settings for the vLLM server of a managed variant (all optional)."""

    port: int | None = Field(None, ge=1, le=65535, description="default: a free port")
    dtype: str | None = None
    max_model_len: int | None = Field(None, ge=1)
    kv_cache_bytes: int | None = Field(None, ge=1, description="CPU KV-cache size")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    args: list[str] = Field(default_factory=list, description="extra engine arguments")
    env: dict[str, str] = Field(default_factory=dict)


class TlsOptions(Strict):
    """How the gateway checks (and proves itself to) a `url: https://...` engine. Verification is always on."""

    ca_file: Path | None = Field(
        None, description="PEM CA bundle that signed the engine's certificate (default: the system's trust store)"
    )
    cert_file: Path | None = Field(None, description="client certificate (PEM), for engines that require mTLS")
    key_file: Path | None = Field(None, description="private key of cert_file (PEM); default: inside cert_file")

    @model_validator(mode="after")
    def key_needs_cert(self) -> TlsOptions:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("`key_file` is the key of a client certificate: give `cert_file` too")
        return self


class SelfConsistencyOption(Strict):
    self_consistency: int = Field(0, ge=0, le=16, description="extra samples for short answers; 0 = off")


class ReliabilityOptions(SelfConsistencyOption):
    """Optional, costlier reliability checks (per experiment; a variant's `base_check` has its own default)."""

    base_check: bool = False


class Variant(SelfConsistencyOption):
    # On by default wherever `base` names a variant: the one signal aimed at a pruned variant's confident errors.
    base_check: bool | None = Field(
        None, description="score answers under `base` (default: on when `base` is set); false opts out"
    )
    cascade: bool = Field(
        False,
        description="re-ask `base` when the answer is above_risk or uncertified "
        "(certified cascade; non-streaming requests)",
    )
    model: str | None = Field(None, description="checkpoint dir: the gateway runs a vLLM server for it")
    url: str | None = Field(None, description="base URL of a vLLM server run elsewhere")
    served_model_name: str | None = Field(None, description="model name a remote server expects")
    tls: TlsOptions | None = Field(None, description="CA bundle / client certificate for an https:// url")
    base: str | None = Field(None, description="the unpruned variant this one was cut from")
    report_card: Path | None = None
    manifest: Path | None = Field(
        None, description="url: variants: the pruning.json of the weights the engine serves (declared memory gauges)"
    )
    engine: EngineOptions = Field(default_factory=EngineOptions)
    max_in_flight: int | None = Field(None, ge=1, description="sequences in flight; beyond it: 429")
    evaluation: bool = Field(False, description="allow echo / prompt logprobs (bounded) for every key")
    multimodal: bool = Field(False, description="accept non-text content parts (image/audio URLs)")
    tools: bool = Field(
        False,
        description="accept function calling (`tools`, tool messages); a managed engine "
        "is started with vLLM's tool parser",
    )
    tool_parser: ToolParser | None = Field(
        None, description=f"vLLM --tool-call-parser of a managed engine (default with tools: {DEFAULT_TOOL_PARSER})"
    )
    # url: variants send this key upstream; managed variants start their engine with it (default: random).
    api_key_file: Path | None = Field(None, description="file holding the engine's API key")
    api_key_env: str | None = Field(None, description="env variable holding the engine's API key")
    guard: GuardOptions | None = Field(None, description="domain gate / cascade to a fallback (app/guard)")
    telemetry: TelemetryOptions | None = Field(None, description="routing telemetry (app/telemetry)")

    @model_validator(mode="after")
    def model_or_url(self) -> Variant:
        if (self.model is None) == (self.url is None):
            raise ValueError("give exactly one of `model` (a checkpoint dir to serve) or `url` (a running server)")
        if self.manifest is not None and self.model is not None:
            raise ValueError(
                "`manifest` declares a url: variant's weights; a managed variant's pruning.json is read "
                "from its model dir"
            )
        if self.tls is not None and not (self.url or "").startswith("https://"):
            raise ValueError(
                "`tls` configures an https:// engine: give `url: https://...` (a managed engine and "
                "http:// urls are plain HTTP)"
            )
        return self

    @model_validator(mode="after")
    def tool_settings(self) -> Variant:
        if self.tool_parser is not None and not self.tools:
            raise ValueError("`tool_parser` picks the engine's parser for function calling: set `tools: true` too")
        if self.tool_parser is not None and self.url is not None:
            raise ValueError(
                "`tool_parser` is a flag of an engine the gateway starts; a `url:` engine is started "
                "with its own --tool-call-parser: give `tools: true` only"
            )
        given = [arg for arg in self.engine.args if arg.split("=")[0] in TOOL_ARGS]
        if given:
            raise ValueError(
                f"engine.args: {given[0].split('=')[0]} is set by the gateway: use `tools: true` "
                "(and `tool_parser:`) instead"
            )
        return self

    @property
    def engine_tool_parser(self) -> str | None:
        """The --tool-call-parser of a managed engine; None: started without function calling."""
        return (self.tool_parser or DEFAULT_TOOL_PARSER) if self.tools and self.managed else None

    @model_validator(mode="after")
    def cascade_needs_base(self) -> Variant:
        if self.cascade and self.base is None:
            raise ValueError("`cascade: true` re-asks the variant's `base`: name it (base: <variant>)")
        if self.cascade and self.guard is not None and self.guard.cascade is not None:
            raise ValueError(
                "give either `cascade: true` (escalate on above_risk / uncertified to `base`) or "
                "`guard.cascade` (escalate on a list of flags), not both"
            )
        return self

    @property
    def base_check_on(self) -> bool:
        """Whether answers are scored under `base`: on by default when `base` is set."""
        return self.base is not None and self.base_check is not False

    @property
    def guards(self) -> GuardOptions | None:
        """`guard:` with `cascade: true` spelled out: escalate on above_risk / uncertified to `base`."""
        if not self.cascade:
            return self.guard
        assert self.base is not None, "cascade_needs_base validated it"
        certified = CascadeOptions(flags=list(CERTIFIED_FLAGS), fallback=self.base)
        return GuardOptions(domain_gate=self.guard.domain_gate if self.guard else None, cascade=certified)

    @field_validator("url")
    @classmethod
    def http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/").removesuffix("/v1") if url else url

    @property
    def managed(self) -> bool:
        return self.model is not None


class Experiment(ReliabilityOptions):
    arms: dict[str, float] = Field(description="variant name -> weight")
    sticky: str = Field("x-session-id", description="header whose value keeps a client on one arm")
    # Verdicts and the automatic stop (app/experiments/config.py; docs/gateway.md, "Experiment statistics").
    control: str | None = Field(None, description="the arm the others are compared with")
    decide: Decide | None = None
    guardrail: Guardrail | None = None

    @field_validator("arms")
    @classmethod
    def positive_total(cls, arms: dict[str, float]) -> dict[str, float]:
        if not arms:
            raise ValueError("needs at least one arm")
        if any(weight < 0 for weight in arms.values()):
            raise ValueError("weights must be >= 0")
        if sum(arms.values()) <= 0:
            raise ValueError("weights must not all be 0")
        return arms


class GatewayConfig(Strict):
    variants: dict[str, Variant]
    experiments: dict[str, Experiment] = Field(default_factory=dict)
    launcher: str | list[str] | None = Field(None, description="vLLM launch command, e.g. `vllm serve`")

    @model_validator(mode="after")
    def names_resolve(self) -> GatewayConfig:
        if not self.variants:
            raise ValueError("`variants` must name at least one variant")
        for name, variant in self.variants.items():
            if variant.base is not None and variant.base not in self.variants:
                raise ValueError(
                    f"variants.{name}.base: unknown variant {variant.base!r}; known: {', '.join(sorted(self.variants))}"
                )
            check_guard(name, variant.guard, self.variants)
        for name, experiment in self.experiments.items():
            if name in self.variants:
                raise ValueError(f"experiments.{name}: an experiment cannot share a variant's name")
            for arm in experiment.arms:
                if arm not in self.variants:
                    raise ValueError(
                        f"experiments.{name}.arms.{arm}: unknown variant; known: {', '.join(sorted(self.variants))}"
                    )
            check_decision_settings(name, experiment.arms, experiment.control, experiment.decide, experiment.guardrail)
        return self

    def launcher_argv(self) -> list[str] | None:
        if self.launcher is None:
            return None
        return shlex.split(self.launcher) if isinstance(self.launcher, str) else list(self.launcher)


def _field_path(location: tuple) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def parse_config(data: object, source: str = "<memory>") -> GatewayConfig:
    """Validate an already-loaded mapping; raise UserError naming the file and field."""
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise UserError(f"{source}: {problems}") from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a variants file; relative paths in it are relative to the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read the variants file {path}: {exc.strerror}; check --config") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with `variants:` (and optional `experiments:`)")
    config = parse_config(data, str(path))
    for variant in config.variants.values():
        # A relative `model` is a dir next to the file when one exists there; otherwise it is
        # kept as written (e.g. a hub id such as `Qwen/Qwen3-30B-A3B` for GPU installs).
        if variant.model is not None and not Path(variant.model).is_absolute():
            candidate = path.parent / variant.model
            if candidate.exists():
                variant.model = str(candidate.resolve())
        if variant.manifest is not None and not variant.manifest.is_absolute():
            variant.manifest = (path.parent / variant.manifest).resolve()
        if variant.report_card is not None and not variant.report_card.is_absolute():
            variant.report_card = (path.parent / variant.report_card).resolve()
        if variant.api_key_file is not None and not variant.api_key_file.is_absolute():
            variant.api_key_file = (path.parent / variant.api_key_file).resolve()
        for field_name in ("ca_file", "cert_file", "key_file"):
            value = getattr(variant.tls, field_name, None) if variant.tls else None
            if value is not None and not value.is_absolute():
                setattr(variant.tls, field_name, (path.parent / value).resolve())
        gate = variant.guard.domain_gate if variant.guard else None
        if gate is not None and gate.file is not None and not gate.file.is_absolute():
            gate.file = (path.parent / gate.file).resolve()
        for field_name in ("config", "manifest"):
            value = getattr(variant.telemetry, field_name, None) if variant.telemetry else None
            if value is not None and not value.is_absolute():
                setattr(variant.telemetry, field_name, (path.parent / value).resolve())
    return config
