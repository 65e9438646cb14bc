"""A non-streaming answer built from the engine's own bytes, with `model` and `reliability` spliced in.

The gateway changes an engine's answer in two places only, in the common case:
the top-level `model` becomes the variant's name, and a `reliability` object is
added as the last key. Re-serialising the whole parsed answer for that (its
logprobs are most of its bytes) was the largest JSON cost of a request; here
the engine's bytes go on with the two edits made in place, when doing so gives
exactly the JSON value `json.dumps` of the edited answer would (same keys in
the same order, same values; only the spelling of numbers and whitespace may
be the engine's instead of Python's). Otherwise (`None`) the caller encodes
the answer as before.

The value is provably the same when:
- msgspec parsed the bytes (standard JSON: no NaN/Infinity, no trailing data;
  `codec.loads_standard`), to a dict whose `model` is a string and which has no
  `reliability` key yet, and the gateway changed nothing else in it (the caller
  checks the choices);
- the bytes end (but for whitespace) with the top-level object's `}`, before
  which `,"reliability":...` becomes the last key;
- when `model` changes: `"model":"<served>"` (as `json.dumps` spells it) occurs
  once, right after `{` or `,` (an unescaped quote there starts a key), `"model"`
  nowhere else, and the bytes hold no `\\u` escape (the only way to spell the
  top-level key other than literally), so that occurrence is the top-level key.
"""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse

_TRAILING_SPACE = b" \t\r\n"


_MODEL_FIELDS: dict[str, bytes] = {}


def model_field(model: str) -> bytes:
    """`"model":"<model>"` as `json.dumps` writes it, ASCII (remembered: a gateway serves a handful of names)."""
    field = _MODEL_FIELDS.get(model)
    if field is None:
        field = b'"model":' + json.dumps(model).encode()
        if len(_MODEL_FIELDS) < 1024:
            _MODEL_FIELDS[model] = field
    return field


def replace_model_key(content: bytes, model: str, variant: str) -> bytes | None:
    """`content` with its `"model":"<model>"` member renamed to `variant`, when that spelling occurs once,
    right after `{` or `,` (an unescaped quote there starts a key, so it is a key, not inside a string),
    and `"model"` nowhere else; None otherwise. Shared by whole answers and stream chunks."""
    engine_field = model_field(model)
    at = content.find(engine_field)
    if at < 1 or content[at - 1] not in b"{," or content.count(b'"model"') != 1:
        return None
    return content[:at] + model_field(variant) + content[at + len(engine_field) :]


class EngineBytesResponse(JSONResponse):
    """A JSON answer whose body is given as bytes (already JSON), for the code that expects a JSONResponse."""

    def render(self, content: bytes) -> bytes:  # type: ignore[override]
        return content


def encode_reliability(reliability: dict) -> bytes:
    """`reliability` as `JSONResponse` writes every value (NaN refused: a ValueError, as before)."""
    return json.dumps(reliability, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def splice_answer(content: bytes, answer: dict, variant: str, reliability: bytes) -> bytes | None:
    """The engine's `content` (parsed: `answer`, standard JSON) with `model` set to `variant` and
    `"reliability":<reliability>` added last; None when that cannot be shown to be the same JSON value."""
    model = answer.get("model")
    if not isinstance(model, str) or "reliability" in answer:
        return None
    end = len(content.rstrip(_TRAILING_SPACE)) - 1
    if end < 1 or content[end] != 0x7D:  # "}"
        return None
    if model != variant:
        renamed = replace_model_key(content, model, variant) if b"\\u" not in content else None
        if renamed is None:
            return None
        end += len(renamed) - len(content)
        content = renamed
    return b"".join((content[:end], b',"reliability":', reliability, b"}"))
