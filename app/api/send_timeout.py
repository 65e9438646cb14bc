"""ASGI middleware: a client that stops reading cannot hold a request (and its engine slot) for ever.

uvicorn's `send` waits while the socket's buffers are full, so a reader that
never reads would park the stream, its upstream connection and its slot. Each
`send` gets `send_timeout_s`; past that the send raises `SendTimedOut` into the
app, whose stream closes its upstream response and frees its slot (status 408
in the access log), and this middleware ends the request: uvicorn then closes
the client's connection because the response is incomplete.

Almost every send returns at once (the socket takes the bytes), so a timer per
send (`asyncio.timeout`: a timer handle scheduled and cancelled each time) was
most of the bound's cost on a stream, one send per token. Instead one watchdog
timer per request looks at the send in progress when it fires: the same send
still running since it was armed means that send has had its `send_timeout_s`
(it is cancelled and raises `SendTimedOut`); a later send re-arms it for that
send's own deadline; no send in progress lets it lapse until the next send.
"""

from __future__ import annotations

import asyncio
import logging

from app.errors import SendTimedOut

log = logging.getLogger("moeprune.gateway")


class SendTimeout:
    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        watch = _SendWatch(send, self.seconds)
        try:
            await self.app(scope, receive, watch.send)
        except SendTimedOut as exc:
            log.warning(
                "slow client: response aborted",
                extra={
                    "request_id": (scope.get("state") or {}).get("request_id"),
                    "path": scope.get("path"),
                    "error": str(exc),
                },
            )
        finally:
            watch.close()


class _SendWatch:
    """Bounds each `send` of one request to `seconds`, with at most one timer pending at a time."""

    __slots__ = (
        "_send",
        "seconds",
        "_loop",
        "_count",
        "_current",
        "_started",
        "_task",
        "_timer",
        "_armed_for",
        "_expired",
        "_cancelling",
    )

    def __init__(self, send, seconds: float) -> None:
        self._send = send
        self.seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._count = 0  # sends started so far
        self._current = 0  # the number of the send in progress; 0: none
        self._started = 0.0  # loop time the send in progress began
        self._task: asyncio.Task | None = None  # the task running it
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0  # the send the pending timer was armed for
        self._expired = 0  # the send the watchdog cancelled; 0: none
        self._cancelling = 0

    async def send(self, message) -> None:
        self._count += 1
        number = self._current = self._count
        self._started = self._loop.time()
        task = self._task = asyncio.current_task()
        if self._timer is None:
            self._armed_for = number
            self._timer = self._loop.call_at(self._started + self.seconds, self._fire)
        try:
            await self._send(message)
        except asyncio.CancelledError:
            if self._expired == number and task is not None:
                self._expired = 0
                if task.uncancel() <= self._cancelling:  # our cancel, not someone else's
                    raise SendTimedOut(f"the client read nothing for {self.seconds:g}s") from None
            raise
        finally:
            if self._current == number:
                self._current = 0
                self._task = None

    def _fire(self) -> None:
        self._timer = None
        current, task = self._current, self._task
        if not current or task is None:
            return  # nothing being sent: the next send arms it again
        if current == self._armed_for:  # this very send has been waiting its whole `seconds`
            self._expired = current
            self._cancelling = task.cancelling()
            task.cancel()
            return
        self._armed_for = current  # a later send: its own deadline
        self._timer = self._loop.call_at(self._started + self.seconds, self._fire)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
