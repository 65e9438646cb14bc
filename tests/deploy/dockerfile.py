"""A small Dockerfile reader for the tests: instructions grouped by build stage."""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        continued = line.rstrip().endswith("\\")
        pending += line.rstrip().rstrip("\\").strip() + " "
        if not continued and pending.strip():
            keyword, _, args = pending.strip().partition(" ")
            logical.append((keyword.upper(), args.strip()))
        if not continued:
            pending = ""
    return logical


def stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages in order."""
    global_args, found = {}, []
    for keyword, args in instructions(path):
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            found.append(Stage(base=parts[0], name=name))
        elif found:
            found[-1].instructions.append((keyword, args))
        elif keyword == "ARG" and "=" in args:
            key, _, value = args.partition("=")
            global_args[key] = value
    return global_args, found


def resolve(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def copy_sources(stage: Stage) -> list[str]:
    """Build-context paths copied into a stage (COPY --from=... copies from a stage, not the context)."""
    sources = []
    for args in stage.args_of("COPY") + stage.args_of("ADD"):
        words = shlex.split(args)
        if any(word.startswith("--from") for word in words):
            continue
        words = [word for word in words if not word.startswith("--")]
        sources += words[:-1]
    return sources


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `relative` out of the build context (last match wins)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(relative).parts
        prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored


def dockerignore_patterns(root: Path) -> list[str]:
    lines = (root / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
