"""Errors in OpenAI's JSON shape, `{"error": {"message", "type", "param", "code"}}`, for every failure.

Handlers turn validation errors, HTTP errors and unexpected exceptions into
that shape, so a client never sees a bare 500 with a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.tool_schemas import FIELD_NOT_FOR_ROLE, TOOL_FIELD_INVALID
from app.errors import OpenAIError

log = logging.getLogger("moeprune.errors")

# Validation errors that mean "this request is not allowed" rather than "this value is out of range": 400.
REFUSED_INPUT = {
    "extra_forbidden": ("unsupported_field", "is not a field this gateway accepts (docs/gateway.md, Security)"),
    "union_tag_invalid": ("unsupported_field", "is not a content part type this gateway accepts"),
    "lone_surrogate": ("invalid_text", None),
    "non_finite_number": ("invalid_number", None),
    "finite_number": ("invalid_number", "must be a finite number (not NaN or Infinity)"),
    # Function calling (app/api/tool_schemas.py): the message names the field and why.
    FIELD_NOT_FOR_ROLE: ("unsupported_field", None),
    TOOL_FIELD_INVALID: ("invalid_value", None),
}
# pydantic names the branch of a union in an error's location (`str`, `list[...]`, `constrained-str`):
# not part of the field path a client can act on.
_UNION_BRANCHES = {"str", "int", "float", "bool", "dict", "list", "none"}
_BRANCH_PREFIXES = ("constrained-", "function-", "tagged-union", "nullable", "lax-", "strict-", "json-or-python")


def _is_branch(part: str) -> bool:
    return "[" in part or part in _UNION_BRANCHES or part.startswith(_BRANCH_PREFIXES)


def _field_path(location) -> str:
    return ".".join(str(part) for part in location if part != "body" and not _is_branch(str(part)))


def _refused_input(errors: Sequence[ErrorDetails]) -> JSONResponse | None:
    for err in errors:
        refused = REFUSED_INPUT.get(err.get("type"))
        if refused is None:
            continue
        code, reason = refused
        param = (err.get("ctx") or {}).get("param") or _field_path(err.get("loc", ())) or None
        message = f"{param}: {reason}" if reason else err.get("msg")
        return OpenAIError(400, message, param=param, code=code).response()
    return None


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return OpenAIError(400, "the request body is not valid JSON", code="invalid_json").response()
    refused = _refused_input(errors)
    if refused is not None:
        return refused
    first = errors[0] if errors else {}
    param = _field_path(first.get("loc", ())) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: {err.get('msg')}"
        for err in errors[:5]
    )
    return OpenAIError(400, message, param=param, code="invalid_value").response()  # OpenAI: 400, not 422


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return OpenAIError(status, message).response(headers=getattr(exc, "headers", None))


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", extra={"request_id": getattr(request.state, "request_id", None)})
    return OpenAIError(500, "internal gateway error; see the gateway log", code="internal_error").response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OpenAIError, lambda request, exc: exc.response())
    # Starlette types every handler as taking `Exception`; it calls each with the class it was registered for,
    # which its signature cannot express, so a handler of a subclass is (wrongly) refused.
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
