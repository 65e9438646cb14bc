"""Tasks as data: one registry of named tasks and the suites that group them.

The schema lives in evaluators/task_schema.py (strict pydantic) and is re-exported here. Field names, as
every reader uses them: `name`, `version`, `domain`, `description`; `data` {`loader`, `path` {`key`,
`file`, `path`}, `options`}; `prompt` {`style`, `template`, `system`, `user`, `assistant`, `few_shot`
{`from_data`, `examples`}}; `decoding` {`temperature`, `top_p`, `max_tokens`, `retries_on_empty`};
`answer` {`extract`, `words`, `json_keys`}; `metrics` [{`name`, `direction`, `aggregation`}];
`overlong` {`policy`: skip | truncate, `side`: left | right, `field`}; `chat_template_kwargs`;
`reasoning_effort`; `strict`; `score_options_by`.

Where tasks come from, all read by the same code (`load_task_file`):
- the project's own sets (evaluators/sets/, registered below by file name);
- the study's tasks, one YAML file each in evaluators/task_files/ (their data is the user's local copy
  of the published files, bound by `--data KEY=PATH` or `--data-dir DIR`);
- a user's own task files (`--task-file`), and `FORMAT=PATH` specs on the command line.
Suites are YAML files in evaluators/suites/ (a list of task and suite names).
"""

from __future__ import annotations

import inspect
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from evaluators.loaders import LOADER_KINDS, LOADERS, load_items
from evaluators.task_kinds import task_kind
from evaluators.task_schema import (  # noqa: F401  (re-exported: the schema's home for importers)
    DOMAINS,
    AnswerSpec,
    DataPath,
    DataSpec,
    Decoding,
    FewShot,
    MetricSpec,
    Overlong,
    PromptSpec,
    TaskSpec,
    legacy_entry,
)
from moeprune.errors import UserError, validation_problems

SETS_DIR = Path(__file__).parent / "sets"
TASK_FILES_DIR = Path(__file__).parent / "task_files"
SUITES_DIR = Path(__file__).parent / "suites"
TEMPLATES = ("chat", "completion")


class Task(TaskSpec):
    """One evaluation task. Also accepts the flat form `Task(name, format, path, domain, template, few_shot,
    version, max_tokens=..., metrics=(names))` that older files and callers use."""

    def __init__(self, *args, **fields):
        if args or "format" in fields:
            fields = legacy_entry(args, fields)
        super().__init__(**fields)

    @property
    def format(self) -> str:
        return self.data.loader

    @property
    def path(self) -> Path | None:
        return self.data.path.path

    @property
    def kind(self) -> str:
        return LOADER_KINDS.get(self.data.loader, "multiple_choice")

    @property
    def template(self) -> str:
        return self.prompt.template

    @property
    def few_shot(self) -> int:
        return self.prompt.few_shot.from_data

    @property
    def max_tokens(self) -> int:
        return self.decoding.max_tokens or task_kind(self.kind).default_max_tokens

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(metric.name for metric in self.metrics)

    def load(self, strict: bool | None = None):
        """The task's items (evaluators.loaders.LoadedItems: a list with `.skipped` rows)."""
        missing = [name for name, where in self.data_paths().items() if where.path is None]
        if missing:
            keys = ", ".join(f"{self.data_paths()[m].key or m}" for m in missing)
            raise UserError(
                f"task {self.name}: no data file given for {keys}; bind it with --data KEY=PATH "
                f"or --data-dir DIR (the task file names the expected file)",
                param="data",
            )
        options = {
            name: (value.path if isinstance(value, DataPath) else value)
            for name, value in self.loader_options().items()
        }
        items = load_items(self.data.loader, self.path, strict=self.strict if strict is None else strict, **options)
        if self.prompt.style == "messages":  # a template naming a field the items lack fails here, not mid-run
            from evaluators.task_prompts import check_templates

            check_templates(self, items[0])
        return items

    def loader_options(self) -> dict:
        return {
            name: (DataPath.model_validate(value) if _is_data_path(value) else value)
            for name, value in self.data.options.items()
        }

    def data_paths(self) -> dict[str, DataPath]:
        """Every data file the task reads: `path` (the items) and any option that names a file."""
        out = {"path": self.data.path}
        out.update({name: value for name, value in self.loader_options().items() if isinstance(value, DataPath)})
        return out


def _is_data_path(value) -> bool:
    return isinstance(value, DataPath) or (
        isinstance(value, dict) and bool(value) and set(value) <= {"key", "file", "path"}
    )


def validate(task: Task) -> Task:
    """Checks the schema cannot make alone: registry names (loaders, metrics) and loader options."""
    if task.format not in LOADERS:
        raise UserError(f"task {task.name}: unknown loader {task.format!r}; valid: {', '.join(sorted(LOADERS))}")
    from evaluators.metric_registry import METRICS

    for metric in task.metrics:
        info = METRICS.get(metric.name)
        if info is None:
            raise UserError(f"task {task.name}: unknown metric(s) {metric.name}; valid: {', '.join(METRICS)}")
        direction = "higher" if info.higher_is_better else "lower"
        if metric.direction and metric.direction != direction:
            raise UserError(
                f"task {task.name}: metric {metric.name} is {direction}-is-better in the registry, "
                f"the task file says {metric.direction}"
            )
        if metric.aggregation and metric.aggregation != info.aggregation:
            raise UserError(
                f"task {task.name}: metric {metric.name} aggregates as {info.aggregation!r} "
                f"(evaluators/metric_registry.py), the task file says {metric.aggregation!r}"
            )
    accepted = [p for p in inspect.signature(LOADERS[task.format]).parameters if p not in ("path", "strict")]
    unknown = sorted(set(task.data.options) - set(accepted))
    if unknown:
        raise UserError(
            f"task {task.name}: loader {task.format} takes no option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(accepted) or 'none'}"
        )
    return task


def _resolve_relative(task: Task, base_dir: Path | None) -> Task:
    """Paths written in a task file are relative to that file."""
    if base_dir is None:
        return task
    update = {}
    if task.data.path.path is not None and not task.data.path.path.is_absolute():
        update["path"] = task.data.path.model_copy(update={"path": base_dir / task.data.path.path})
    options = dict(task.data.options)
    for name, value in task.loader_options().items():
        if isinstance(value, DataPath) and value.path is not None and not Path(value.path).is_absolute():
            options[name] = value.model_copy(update={"path": base_dir / value.path}).model_dump(exclude_none=True)
    if options != dict(task.data.options):
        update["options"] = options
    if not update:
        return task
    return task.model_copy(update={"data": task.data.model_copy(update=update)})


def task_from_entry(entry: dict, base_dir: Path | None, where: str = "task entry", source: Path | None = None) -> Task:
    """A task from a YAML/dict entry (nested schema, or the flat legacy form); paths relative to base_dir."""
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a mapping of task fields, got {type(entry).__name__}")
    try:
        task = Task(**entry)
    except ValidationError as exc:
        valid = ", ".join(sorted(set(TaskSpec.model_fields) - {"source_file"}))
        raise UserError(
            f"{where} {entry.get('name', '?')!r}: {validation_problems(exc)}; valid keys: {valid}"
        ) from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where} {entry.get('name', '?')!r}: {exc}") from None
    task = _resolve_relative(task, base_dir)
    if source is not None:
        task = task.model_copy(update={"source_file": source})
    return validate(task)


def _read_yaml(path: Path):
    import yaml

    if not path.is_file():
        raise UserError(f"task file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise UserError(f"{path}{f', line {line + 1}' if line is not None else ''}: invalid YAML") from None


def load_task_file(path: str | Path) -> dict[str, Task]:
    """A YAML file holding one task, a list of tasks, or {tasks: [...]}."""
    path = Path(path)
    data = _read_yaml(path)
    if isinstance(data, dict) and "tasks" in data and "name" not in data:
        entries = data["tasks"]
    elif isinstance(data, dict):
        entries = [data]
    else:
        entries = data
    if not isinstance(entries, list) or not entries:
        raise UserError(f"task file {path}: expected a task, a list of tasks, or {{tasks: [...]}}")
    tasks = [task_from_entry(entry, path.parent, where=f"task file {path}", source=path) for entry in entries]
    return {task.name: task for task in tasks}


def project_sets(sets_dir: Path = SETS_DIR) -> dict[str, Task]:
    """The project's own sets (docs/contracts.md "Shipped evaluation sets")."""
    spec = {
        "bio_qa": ("biomedical_qa.jsonl", "biomedical", "biomedical answerable multiple-choice questions"),
        "general_qa": ("general_qa.jsonl", "general", "general-domain answerable multiple-choice questions"),
        "bio_fake": ("biomedical_fake.jsonl", "biomedical", "made-up biomedical entities: must abstain"),
        "general_fake": ("general_fake.jsonl", "general", "made-up general entities: must abstain"),
        "bio_nota": ("biomedical_nota.jsonl", "biomedical", "biomedical none-of-the-above items"),
        "general_nota": ("general_nota.jsonl", "general", "general none-of-the-above items"),
        # more held-out items in other forms, so each domain has >= 600 labelled answers to certify flags on
        "bio_reliability": (
            "biomedical_reliability.jsonl",
            "biomedical",
            "biomedical labelled items for certified flags",
        ),
        "general_reliability": ("general_reliability.jsonl", "general", "general labelled items for certified flags"),
    }
    # Their options are single words that a model answers with (the demo model
    # answers "antiviral", not "A"), so an option is scored by its text: the
    # likelihood of a letter it never says would make calibration meaningless.
    tasks = {
        name: Task(name, "jsonl", sets_dir / file, domain, description=text, score_options_by="text")
        for name, (file, domain, text) in spec.items()
    }
    tasks.update(open_question_tasks(sets_dir))
    return tasks


def open_question_tasks(sets_dir: Path = SETS_DIR) -> dict[str, Task]:
    """The free-text sets: the question alone as the user turn, the whole reply matched against the reference
    (a made-up entity's right answer is to decline), so free-text answers are labelled and certified too."""
    spec = {
        "bio_open": ("biomedical_open.jsonl", "biomedical", "biomedical questions asked plainly: free-text answers"),
        "general_open": ("general_open.jsonl", "general", "general questions asked plainly: free-text answers"),
    }
    return {
        name: Task(
            name=name,
            domain=domain,
            description=text,
            data={"loader": "open_jsonl", "path": {"path": sets_dir / file}},
            prompt={"style": "messages", "user": "{question}"},
            decoding={"max_tokens": 16},
            answer={"extract": "text"},
            metrics=[{"name": "exact_match"}, {"name": "refusal_rate"}, {"name": "hallucination_rate"}],
        )
        for name, (file, domain, text) in spec.items()
    }


@cache
def study_tasks(task_dir: Path = TASK_FILES_DIR) -> dict[str, Task]:
    """The study's tasks, one shipped task file each."""
    tasks: dict[str, Task] = {}
    for path in sorted(task_dir.glob("*.yaml")):
        tasks.update(load_task_file(path))
    return tasks


def shipped_tasks() -> dict[str, Task]:
    return {**project_sets(), **study_tasks()}


@cache
def _suite_files(suites_dir: Path = SUITES_DIR) -> dict[str, tuple[str, ...]]:
    suites = {}
    for path in sorted(suites_dir.glob("*.yaml")):
        data = _read_yaml(path)
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            raise UserError(f"suite file {path}: expected {{name, description, tasks: [names]}}")
        suites[str(data.get("name") or path.stem)] = tuple(str(name) for name in data["tasks"])
    return suites


def suite_members(name: str, suites: dict[str, tuple[str, ...]] | None = None, _seen=()) -> tuple[str, ...]:
    """A suite's task names, with member suites expanded in place (a cycle is an error)."""
    suites = _suite_files() if suites is None else suites
    if name in _seen:
        raise UserError(f"suite {name} includes itself (through {' -> '.join(_seen)})")
    out: list[str] = []
    for member in suites[name]:
        for task in suite_members(member, suites, (*_seen, name)) if member in suites else (member,):
            if task not in out:
                out.append(task)
    return tuple(out)


# Suite name -> task names (member suites expanded), from the suite files shipped in the package.
SUITES: dict[str, tuple[str, ...]] = {name: suite_members(name) for name in _suite_files()}


def task_from_file_spec(spec: str) -> Task:
    """`FORMAT=PATH` -> a Task named FORMAT-STEM."""
    fmt, _, path = spec.partition("=")
    fmt = fmt.strip()
    if fmt not in LOADERS:
        raise UserError(f"unknown data format {fmt!r} in {spec!r}; valid formats: {', '.join(sorted(LOADERS))}")
    path = Path(path.strip()).expanduser()
    domain = "general" if fmt == "mmlu" else "biomedical"
    return Task(f"{fmt}-{path.stem}", fmt, path, domain)


def resolve_tasks(specs: list[str], registry: dict[str, Task] | None = None) -> list[Task]:
    """Names, suite names and FORMAT=PATH specs -> tasks, in order, without duplicates."""
    registry = dict(shipped_tasks()) if registry is None else registry
    chosen: dict[str, Task] = {}
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if "=" in spec:
            task = task_from_file_spec(spec)
            chosen[task.name] = task
        elif spec in SUITES:
            for name in SUITES[spec]:
                if name not in registry:
                    raise UserError(f"suite {spec} names task {name!r}, which is not registered")
                chosen[name] = registry[name]
        elif spec in registry:
            chosen[spec] = registry[spec]
        else:
            raise UserError(
                f"unknown task {spec!r}; valid tasks: {', '.join(sorted(registry))}; "
                f"suites: {', '.join(SUITES)}; or FORMAT=PATH with FORMAT one of {', '.join(sorted(LOADERS))}"
            )
    if not chosen:
        raise UserError("no tasks given; name tasks or a suite", param="tasks")
    return list(chosen.values())


def parse_data_bindings(specs: list[str] | None) -> dict[str, Path]:
    """`KEY=PATH` strings (the --data flag) -> {key: path}."""
    out = {}
    for spec in specs or []:
        key, sep, path = spec.partition("=")
        if not sep or not key.strip() or not path.strip():
            raise UserError(f"data binding {spec!r} is not KEY=PATH", param="data")
        out[key.strip()] = Path(path.strip()).expanduser()
    return out


def bind_data(
    tasks: list[Task], bindings: dict[str, Path] | None = None, data_dir: str | Path | None = None, strict: bool = False
) -> list[Task]:
    """Give every task's data files their paths: `--data KEY=PATH` first, then the path the task file
    wrote, then DATA_DIR/file. `strict` (the --strict flag) makes every task abort on a bad row."""
    bindings = bindings or {}
    unused = set(bindings) - {where.key for task in tasks for where in task.data_paths().values()}
    if unused:
        known = sorted({where.key for task in tasks for where in task.data_paths().values() if where.key})
        raise UserError(
            f"--data names key(s) {', '.join(sorted(unused))} that no chosen task reads; "
            f"keys: {', '.join(known) or 'none'}",
            param="data",
        )

    def resolved(where: DataPath) -> DataPath:
        if where.key in bindings:
            return where.model_copy(update={"path": bindings[where.key]})
        if where.path is None and data_dir is not None and where.file:
            return where.model_copy(update={"path": Path(data_dir) / where.file})
        return where

    out = []
    for task in tasks:
        options = {
            name: (resolved(value).model_dump(mode="json", exclude_none=True) if isinstance(value, DataPath) else value)
            for name, value in task.loader_options().items()
        }
        data = task.data.model_copy(update={"path": resolved(task.data.path), "options": options})
        out.append(task.model_copy(update={"data": data, "strict": task.strict or strict}))
    return out
