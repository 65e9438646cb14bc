"""Decode the engine's JSON faster, to exactly the values `json.loads` gives.

msgspec's decoder parses the same JSON to the same Python values (dict key
order, big integers, correctly rounded floats, the last of duplicate keys),
several times faster. What it refuses and the stdlib accepts (NaN and
Infinity literals, numbers that overflow a float, lone surrogates, a UTF-8
BOM, UTF-16/32 bodies) goes to `json.loads`, so every input keeps the value,
or the error, it had before.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode


def loads(data: bytes) -> Any:
    try:
        return _decode(data)
    except msgspec.DecodeError:  # also its ValidationError (an out-of-range number)
        return json.loads(data)


def loads_standard(data: bytes) -> tuple[Any, bool]:
    """`loads(data)`, and whether msgspec parsed it: standard JSON, all of `data` (no NaN or Infinity)."""
    try:
        return _decode(data), True
    except msgspec.DecodeError:
        return json.loads(data), False
