"""The two completion endpoints served straight from ASGI, ahead of FastAPI's router.

`POST /v1/chat/completions` and `POST /v1/completions` are nearly all of the
gateway's traffic, and FastAPI's way there (router matching, its exception and
exit-stack middleware, dependency solving, the request wrappers) cost more CPU
per request than the gateway's own work on it. `CompletionRoutes` sits right
inside `BodyCap` (so auth and the body bounds have run) and serves exactly
those two method+path pairs itself, doing what FastAPI's handler does and no
more, in the same order:

1. read the body; parse it as JSON when the Content-Type is JSON (a missing
   Content-Type leaves it bytes, as FastAPI's strict default does);
2. refuse a request the API-key middleware never saw (`require_checked_request`);
3. validate it with the route's own pydantic model, the one the OpenAPI schema
   is built from (`CompletionRoute.schema`), with FastAPI's arguments and error
   locations, so a bad body gets the very same 400;
4. call the route's own handler (app/api/routes/chat.py, completions.py).

The FastAPI routes stay registered: they document the endpoints in /docs and
serve every request this does not take (another method, a trailing slash, a
`root_path`). An error is answered by the app's own exception handlers, looked
up as Starlette looks them up; anything they do not handle goes up to
Starlette's server-error middleware, as before.
"""

from __future__ import annotations

import email.message
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.api.deps import require_checked_request
from app.serving.codec import loads

Handler = Callable[[Any, Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Any]
_JSON_TYPES = (b"application/json", b"application/json; charset=utf-8")


@dataclass(frozen=True)
class CompletionRoute:
    """One raw route: the request model it validates with and the handler it calls (both the FastAPI route's)."""

    schema: type[BaseModel]
    handler: Handler


def is_json(content_type: bytes | None) -> bool:
    """FastAPI's test of a Content-Type (`application/json` or `application/*+json`, parameters ignored);
    the two common spellings without the header parser."""
    if content_type is None:
        return False
    if content_type in _JSON_TYPES:
        return True
    message = email.message.Message()
    message["content-type"] = content_type.decode("latin-1")
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _content_type(scope) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return value  # the first one, as starlette's `request.headers.get` gives
    return None


async def parse_body(request: Request) -> Any:
    """The body as FastAPI's handler hands it to validation: JSON value, raw bytes, or None when empty."""
    try:
        body = await request.body()
        if not body:
            return None
        if is_json(_content_type(request.scope)):
            return loads(body)  # json.loads' values and errors, faster (app/serving/codec.py)
        return body
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}
        raise RequestValidationError([{**error, "ctx": {"error": exc.msg}}], body=exc.doc) from exc
    except Exception as exc:  # FastAPI's answer to a body it cannot read or decode (bad UTF-8, too deep)
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc


def validate(schema: type[BaseModel], body: Any) -> BaseModel:
    """`body` validated as FastAPI validates a lone body parameter: python mode, `from_attributes`, a
    missing body is `body: Field required`, every error located under `body`."""
    if body is None:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing], body=body)
    try:
        return schema.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        errors = [{**err, "loc": ("body", *err.get("loc", ()))} for err in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=body) from None


class CompletionRoutes:
    """ASGI middleware serving `routes` (exact path -> route) for POST; everything else goes to `app`."""

    def __init__(
        self, app, routes: Mapping[str, CompletionRoute], exception_handlers: Mapping[Any, ExceptionHandler]
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        # The handlers FastAPI's exception middleware uses (classes only; status codes go to HTTPException's).
        self.handlers = {kind: h for kind, h in exception_handlers.items() if isinstance(kind, type)}

    async def __call__(self, scope, receive, send):
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None or scope.get("root_path"):
            return await self.app(scope, receive, send)
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            started = True
            await send(message)

        request = Request(scope, receive, tracked_send)
        try:
            body = await parse_body(request)
            await require_checked_request(request)
            response = await route.handler(validate(route.schema, body), request)
            await response(scope, receive, tracked_send)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise  # Starlette's server-error middleware answers 500, as for any route
            if started:
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            answer = handler(request, exc)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer is not None:
                await answer(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        for kind in type(exc).__mro__:
            if kind is Exception:
                return None  # the catch-all belongs to the server-error middleware, outside this one
            if kind in self.handlers:
                return self.handlers[kind]
        return None
