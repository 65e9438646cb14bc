"""The error every layer of the gateway raises: an answer in OpenAI's shape, `{"error": {...}}`.

It lives at the bottom of `app/` so that serving, guard and experiment code can raise it without
importing the HTTP layer (`app/api/errors.py` installs the handlers that answer with it).
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

# Status -> OpenAI error type.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class OpenAIError(Exception):
    """An error the API answers with: status, message and the OpenAI fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = ERROR_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers={**self.headers, **(headers or {})})


class SendTimedOut(Exception):
    """The client did not take a response message within the send timeout (raised by
    `app/api/send_timeout.py`, caught by the streaming code to stop the upstream)."""
