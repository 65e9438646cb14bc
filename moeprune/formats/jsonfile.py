"""Reading a user-supplied JSON file with errors that say which file, which line, and what to do."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from moeprune.errors import UserError


def read_json(path: str | Path, if_missing: str) -> Any:
    """Parse `path`; a missing file raises UserError(if_missing), bad JSON names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(if_missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def json_lines(path: Path, error: Callable[[int, str], Exception]) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line of a JSONL file; `error(line, what)` for a bad one."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(number, f"not valid JSON ({exc.msg})") from None
