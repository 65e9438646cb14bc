"""Three jobs side by side over one core: `pruning`, `evaluators` and `app` import only the
neutral `moeprune` (formats, contracts, reliability rules), never each other; the demo is the one
application above them that may import all three. `testkit` (tiny models, local vLLM servers) sits
above them all, for tests and benchmarks; `bench` may import it but never `tests`, and nothing
that ships imports `testkit` or `tests`.

Parses every module's imports (top level and inside functions) without
importing anything, so a lazy import that crosses a layer upwards is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "moeprune": set(),
    "pruning": {"moeprune"},
    "evaluators": {"moeprune"},
    "app": {"moeprune"},
    "demo": {"moeprune", "pruning", "evaluators", "app"},
    "testkit": {"moeprune", "pruning", "evaluators", "app", "demo"},
    "bench": {"moeprune", "pruning", "evaluators", "app", "demo", "testkit"},
}
# Every project package the checker recognises; `tests` may import anything, so it has no rule.
PROJECT = set(ALLOWED) | {"tests"}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


def test_no_package_imports_a_layer_above_it():
    crossings = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []:
            for target in sorted(imported_packages(path) - allowed - {package}):
                crossings.append(f"{path.relative_to(ROOT)} imports {target}")
    assert crossings == []


def test_the_checker_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from app.main import create_app\n    import evaluators.card\n")
    assert imported_packages(module) == {"app", "evaluators"}


def test_the_checker_sees_bench_importing_tests(tmp_path):
    module = tmp_path / "b.py"
    module.write_text("from testkit.vllm_server import free_port\nfrom tests.support.manifests import write_manifest\n")
    assert imported_packages(module) - ALLOWED["bench"] == {"tests"}


# Inside the gateway, the HTTP layer (app/api) is on top: serving, guard, experiments, reliability,
# engines and the state raise `app.errors.OpenAIError` and never import the layer that answers with it.
HTTP_LAYER_USERS = {"app/api", "app/main.py", "app/commands"}


def test_only_the_http_layer_and_the_entry_points_import_app_api():
    crossings = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if any(relative == user or relative.startswith(user + "/") for user in HTTP_LAYER_USERS):
            continue
        tree = ast.parse(path.read_text(), str(path))
        type_only = {
            id(inner)
            for node in ast.walk(tree)  # imports under `if TYPE_CHECKING:` do not run
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else []
            )
            crossings += [f"{relative} imports {name}" for name in names if name.startswith("app.api")]
    assert not crossings, "\n".join(crossings)


def imported_modules(path: Path, root: Path = ROOT) -> set[Path]:
    """The project files a module imports (top level and inside functions): `from a.b import c` names a/b.py,
    or a/b/c.py where c is a module."""

    def file_of(dotted: str) -> Path | None:
        base = root.joinpath(*dotted.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    found: set[Path | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {file_of(alias.name) for alias in node.names if alias.name.split(".")[0] in PROJECT}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in PROJECT:
                found.add(file_of(node.module))
                found |= {file_of(f"{node.module}.{alias.name}") for alias in node.names}
    return {target for target in found if target is not None and target != path}


def import_cycles(files: list[Path], root: Path = ROOT) -> list[list[str]]:
    """Strongly connected groups of more than one file (Tarjan), each as sorted relative paths."""
    graph = {path: imported_modules(path, root) & set(files) for path in files}
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    cycles: list[list[str]] = []

    def visit(node: Path) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(str(member.relative_to(root)) for member in group))

    for path in files:
        if path not in index:
            visit(path)
    return cycles


def test_no_two_modules_import_each_other_even_lazily():
    """A lazy import inside a function still ties two files into one: neither can be read, moved or tested
    without the other (the demo's build, shipped-model and training modules were such a circle)."""
    files = [
        path for package in ALLOWED for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir()
    ]
    assert import_cycles(files) == []


def test_the_cycle_checker_sees_a_lazy_circle(tmp_path):
    package = tmp_path / "demo"
    package.mkdir()
    (package / "a.py").write_text("from demo.b import g\n")
    (package / "b.py").write_text("def g():\n    from demo import a\n")
    (package / "c.py").write_text("from demo.a import g\n")  # imports into the circle, is not part of it
    files = [package / name for name in ("a.py", "b.py", "c.py")]
    assert import_cycles(files, tmp_path) == [["demo/a.py", "demo/b.py"]]
