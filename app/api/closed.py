"""What every request schema is built from: closed models, and bounds on client-given JSON schemas.

Shared by app/api/schemas.py and app/api/tool_schemas.py (a tool's `parameters` is
a JSON schema bounded like `response_format`'s).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

MAX_SCHEMA_CHARS = 16_384  # a JSON schema for structured output: its compile cost grows with its size
MAX_SCHEMA_DEPTH = 16
MAX_NAME_CHARS = 64


class Closed(BaseModel):
    # NaN/Infinity are refused in every float field (pydantic allows them by default).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _depth(value: object) -> int:
    """Nesting depth of a JSON value, iteratively (a deep schema must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_SCHEMA_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def schema_chars(schema: object) -> int:
    return len(json.dumps(schema, separators=(",", ":")))


def bounded_schema(schema: dict) -> dict:
    if schema_chars(schema) > MAX_SCHEMA_CHARS:
        raise ValueError(f"the schema is longer than {MAX_SCHEMA_CHARS} characters of JSON")
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels")
    return schema
