"""Tasks as data: one registry of named tasks and the suites that group them.

A task is a data file in a known format plus how to prompt and score it. The
project's shipped sets are registered by file name (evaluators/sets/); any
published-format file a user has locally is a task too, named on the command
line as `FORMAT=PATH` (e.g. `pubmedqa=/data/ori_pqal.json`), or described in
a YAML file of task entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from evaluators.loaders import LOADERS, load_items
from moeprune.errors import UserError

SETS_DIR = Path(__file__).parent / "sets"
DOMAINS = ("biomedical", "general")
TEMPLATES = ("chat", "completion")


@dataclass(frozen=True)
class Task:
    """One evaluation task: where its items come from and how to prompt and score them."""

    name: str
    format: str  # a key of evaluators.loaders.LOADERS
    path: Path
    domain: str = "biomedical"
    template: str = "chat"  # chat: one user message; completion: the same text + "\nAnswer:"
    few_shot: int = 0  # leading items used as worked examples (and not scored)
    version: int = 1
    max_tokens: int | None = None  # default: 32 for MC answers, 128 for summaries
    score_options_by: str = "letter"  # option log-likelihood of the letter, or of the option "text"
    description: str = ""
    metrics: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> str:
        return "summarisation" if self.format == "summaries" else "multiple_choice"

    def load(self) -> list:
        return load_items(self.format, self.path)


def shipped_tasks(sets_dir: Path = SETS_DIR) -> dict[str, Task]:
    """The project's own sets (docs/contracts.md "Shipped evaluation sets")."""
    spec = {
        "bio_qa": ("biomedical_qa.jsonl", "biomedical", "biomedical answerable multiple-choice questions"),
        "general_qa": ("general_qa.jsonl", "general", "general-domain answerable multiple-choice questions"),
        "bio_fake": ("biomedical_fake.jsonl", "biomedical", "made-up biomedical entities: must abstain"),
        "general_fake": ("general_fake.jsonl", "general", "made-up general entities: must abstain"),
        "bio_nota": ("biomedical_nota.jsonl", "biomedical", "biomedical none-of-the-above items"),
        "general_nota": ("general_nota.jsonl", "general", "general none-of-the-above items"),
    }
    # Their options are single words that a model answers with (the demo model
    # answers "antiviral", not "A"), so an option is scored by its text: the
    # likelihood of a letter it never says would make calibration meaningless.
    return {name: Task(name, "jsonl", sets_dir / file, domain, description=text, score_options_by="text")
            for name, (file, domain, text) in spec.items()}


SUITES = {
    "biomedical": ("bio_qa", "bio_fake", "bio_nota"),
    "general": ("general_qa", "general_fake", "general_nota"),
    "all": ("bio_qa", "bio_fake", "bio_nota", "general_qa", "general_fake", "general_nota"),
}


def task_from_file_spec(spec: str) -> Task:
    """`FORMAT=PATH[,domain=general]`-style spec -> Task named FORMAT-STEM."""
    fmt, _, path = spec.partition("=")
    fmt = fmt.strip()
    if fmt not in LOADERS:
        raise UserError(f"unknown data format {fmt!r} in {spec!r}; valid formats: {', '.join(sorted(LOADERS))}")
    path = Path(path.strip()).expanduser()
    domain = "general" if fmt == "mmlu" else "biomedical"
    return Task(f"{fmt}-{path.stem}", fmt, path, domain)


def task_from_entry(entry: dict, base_dir: Path) -> Task:
    """A task from a YAML/dict entry: name, format, path (relative to the YAML file), and options."""
    known = {f for f in Task.__dataclass_fields__}
    unknown = set(entry) - known
    if unknown or not {"name", "format", "path"} <= set(entry):
        raise UserError(f"task entry {entry!r}: needs name, format, path; unknown keys: {sorted(unknown)}; "
                        f"valid keys: {', '.join(sorted(known))}")
    task = Task(**{**entry, "path": base_dir / str(entry["path"]),
                   "metrics": tuple(entry.get("metrics", ()))})
    validate(task)
    return task


def validate(task: Task) -> Task:
    if task.format not in LOADERS:
        raise UserError(f"task {task.name}: unknown format {task.format!r}; valid: {', '.join(sorted(LOADERS))}")
    if task.domain not in DOMAINS:
        raise UserError(f"task {task.name}: domain {task.domain!r} is not one of {', '.join(DOMAINS)}")
    if task.template not in TEMPLATES:
        raise UserError(f"task {task.name}: template {task.template!r} is not one of {', '.join(TEMPLATES)}")
    from evaluators.task_metrics import METRIC_NAMES

    unknown = [m for m in task.metrics if m not in METRIC_NAMES]
    if unknown:
        raise UserError(f"task {task.name}: unknown metric(s) {', '.join(unknown)}; valid: {', '.join(METRIC_NAMES)}")
    if task.score_options_by not in ("letter", "text"):
        raise UserError(f"task {task.name}: score_options_by must be 'letter' or 'text'")
    return task


def load_task_file(path: str | Path) -> dict[str, Task]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"task file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise UserError(f"task file {path}{f', line {line + 1}' if line is not None else ''}: invalid YAML") from None
    entries = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise UserError(f"task file {path}: expected a list of task entries (or {{tasks: [...]}})")
    tasks = [task_from_entry(entry, path.parent) for entry in entries]
    return {task.name: task for task in tasks}


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
    return [replace(task) for task in chosen.values()]
