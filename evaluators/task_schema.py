"""The task file schema: what one evaluation task is, as data (strict pydantic; unknown keys are errors).

A task file (YAML) holds one task (the shipped study tasks, `evaluators/task_files/*.yaml`) or a list
under `tasks:`. Field names, as every reader uses them (evaluators/runner.py, evaluate.py, report_tasks.py):

    name, version, domain ("biomedical" | "general"), description
    data:      loader (a key of evaluators.loaders.LOADERS), path (a DataPath), options (loader keyword
               arguments; a value may itself be a DataPath, e.g. PubMedQA's `pmids` list)
               DataPath = {key, file, path}: `--data KEY=PATH` binds it; else `path` (relative to the
               task file); else `--data-dir DIR` + `file`
    prompt:    style ("contract": the fixed MC prompt of evaluators/prompts.py | "messages": the
               templates below), template ("chat" | "completion"), system, user, assistant (templates
               with {field} placeholders from the item), few_shot {from_data: N leading items, examples:
               inline worked examples, each a dict of item fields plus `answer`}
    decoding:  temperature, top_p, max_tokens (None: 32 for MC answers, 128 for summaries),
               retries_on_empty (re-ask when the answer comes back empty)
    answer:    extract ("option" | "word" | "json_field" | "text"), words, json_keys
    metrics:   [{name, direction, aggregation}]: names from evaluators/metric_registry.py; direction and
               aggregation, when given, must agree with the registry (they document the file)
    overlong:  policy ("skip" | "truncate"), side ("left" | "right": which end is cut), field (the item
               field that is cut; None: the whole last user message). Enforced at run time by the runner.
    chat_template_kwargs, reasoning_effort: sent with every request of this task (None: the run's)
    strict:    abort on a row the loader cannot interpret (default: skip it, counted in the card)
    score_options_by ("letter" | "text"): which continuation the option log-likelihood scores
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DOMAINS = ("biomedical", "general")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataPath(_Strict):
    """A data file: bound on the command line by `key`, or given as `path`, or found as `file` under a data dir."""

    key: str | None = None
    file: str | None = None
    path: Path | None = None

    @model_validator(mode="after")
    def _some_way_to_find_it(self):
        if not (self.key or self.file or self.path):
            raise ValueError("a data path needs a key (bound by --data KEY=PATH), a file or a path")
        return self


class DataSpec(_Strict):
    loader: str
    path: DataPath
    options: dict[str, Any] = Field(default_factory=dict)


class FewShot(_Strict):
    from_data: int = Field(0, ge=0)  # leading items of the data file: worked examples, not scored
    examples: tuple[dict[str, str], ...] = ()  # inline worked examples: item fields + "answer"

    @field_validator("examples")
    @classmethod
    def _examples_have_answers(cls, value):
        for number, example in enumerate(value, start=1):
            if "answer" not in example:
                raise ValueError(f"few-shot example {number} has no 'answer'")
        return value


class PromptSpec(_Strict):
    style: Literal["contract", "messages"] = "contract"
    template: Literal["chat", "completion"] = "chat"
    system: str | None = None
    user: str | None = None
    assistant: str = "{answer}"
    few_shot: FewShot = FewShot()

    @model_validator(mode="after")
    def _messages_need_a_user_turn(self):
        if self.style == "messages" and not self.user:
            raise ValueError("prompt style 'messages' needs a user template")
        return self


class Decoding(_Strict):
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    retries_on_empty: int = Field(0, ge=0, le=20)


class AnswerSpec(_Strict):
    extract: Literal["option", "word", "json_field", "text"] = "option"
    words: tuple[str, ...] = ()  # extract "word": the allowed answers (e.g. yes / no / maybe)
    json_keys: tuple[str, ...] = ()  # extract "json_field": keys tried in order

    @model_validator(mode="after")
    def _extractor_has_what_it_needs(self):
        if self.extract == "word" and not self.words:
            raise ValueError("answer extract 'word' needs the allowed words")
        if self.extract == "json_field" and not self.json_keys:
            raise ValueError("answer extract 'json_field' needs json_keys")
        return self


class MetricSpec(_Strict):
    name: str
    direction: Literal["higher", "lower"] | None = None
    aggregation: Literal["mean", "corpus"] | None = None


class Overlong(_Strict):
    policy: Literal["skip", "truncate"] = "skip"
    side: Literal["left", "right"] = "left"
    field: str | None = None


class TaskSpec(_Strict):
    name: str = Field(min_length=1)
    version: int | str = 1
    domain: Literal["biomedical", "general"] = "biomedical"
    description: str = ""
    data: DataSpec
    prompt: PromptSpec = PromptSpec()
    decoding: Decoding = Decoding()
    answer: AnswerSpec = AnswerSpec()
    metrics: tuple[MetricSpec, ...] = ()
    overlong: Overlong = Overlong()
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    strict: bool = False
    score_options_by: Literal["letter", "text"] = "letter"
    source_file: Path | None = Field(None, exclude=True)  # the task file it came from (paths resolve there)


LEGACY_FIELDS = (
    "name",
    "format",
    "path",
    "domain",
    "template",
    "few_shot",
    "version",
    "max_tokens",
    "score_options_by",
    "description",
    "metrics",
)


def legacy_entry(args: tuple, fields: dict) -> dict:
    """The flat form (`name, format, path, domain, template, few_shot, version`, `max_tokens`, `metrics` as
    names), as older task files and call sites write it, -> the nested schema's fields."""
    if len(args) > len(LEGACY_FIELDS):
        raise TypeError(f"Task takes at most {len(LEGACY_FIELDS)} positional fields")
    flat = dict(zip(LEGACY_FIELDS, args))
    duplicated = set(flat) & set(fields)
    if duplicated:
        raise TypeError(f"Task got {', '.join(sorted(duplicated))} both positionally and by name")
    flat.update(fields)
    if "format" not in flat or "path" not in flat:
        raise ValueError("a flat task entry needs name, format and path")
    nested = {
        key: value
        for key, value in flat.items()
        if key not in LEGACY_FIELDS or key in ("name", "domain", "version", "description", "score_options_by")
    }
    nested["data"] = {"loader": flat["format"], "path": {"path": flat["path"]}}
    prompt = dict(nested.pop("prompt", {}) or {})
    if "template" in flat:
        prompt["template"] = flat["template"]
    if flat.get("few_shot"):
        prompt["few_shot"] = {"from_data": flat["few_shot"]}
    if prompt:
        nested["prompt"] = prompt
    if flat.get("max_tokens") is not None:
        nested["decoding"] = {**dict(nested.get("decoding", {}) or {}), "max_tokens": flat["max_tokens"]}
    if flat.get("metrics"):
        nested["metrics"] = [m if isinstance(m, (dict, MetricSpec)) else {"name": m} for m in flat["metrics"]]
    return nested
