"""Values JSON can carry but the gateway cannot forward: lone surrogates and non-finite numbers.

Python's json module accepts `"\\ud800"` (a lone UTF-16 surrogate, not
encodable as UTF-8) and the non-standard `NaN` / `Infinity`; either would make
forwarding the body raise deep inside the HTTP client (a 500). They are found
here, anywhere in the body, and refused with a 400 naming where they are.
"""

from __future__ import annotations

import math

from pydantic_core import PydanticCustomError

# Error types app/api/errors.py turns into 400s.
LONE_SURROGATE = "lone_surrogate"
NON_FINITE = "non_finite_number"


def _is_encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dotted(where: tuple | None) -> str:
    parts = []
    while where is not None:
        where, key = where
        parts.append(str(key))
    return ".".join(reversed(parts)) or "(top level)"


def find_unsafe_value(data: object) -> tuple[str, str] | None:
    """(error type, dotted path) of the first unsafe value, or None. Iterative (any depth), and the
    path is built only when something is found: long token-id lists cost one type check per item."""
    stack: list[tuple[object, tuple | None]] = [(data, None)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if not _is_encodable(value):
                return LONE_SURROGATE, _dotted(where)
        elif isinstance(value, float):
            if not math.isfinite(value):
                return NON_FINITE, _dotted(where)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and not _is_encodable(key):
                    return LONE_SURROGATE, _dotted(where)
                if not isinstance(item, int):  # ints (and bools) are always safe
                    stack.append((item, (where, key)))
        elif isinstance(value, list):
            stack.extend((item, (where, index)) for index, item in enumerate(value) if not isinstance(item, int))
    return None


def reject_unsafe_values(data: object) -> None:
    found = find_unsafe_value(data)
    if found is None:
        return
    kind, path = found
    what = (
        "a lone UTF-16 surrogate (not valid Unicode text)"
        if kind == LONE_SURROGATE
        else "NaN or Infinity (not a JSON number)"
    )
    raise PydanticCustomError(kind, "{path}: holds {what}", {"path": path, "what": what, "param": path})
