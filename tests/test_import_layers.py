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
