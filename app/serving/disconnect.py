"""Race a request's work against its client hanging up, so an abandoned request stops at once.

Starlette does not cancel a handler whose client has gone: without this a
non-streaming request keeps the engine generating to the end and holds its
slot. Cancelling the work closes its httpx request, and vLLM aborts a request
whose connection closes. Only for use after the body has been read: it reads
(and drops) every further ASGI message while it waits for `http.disconnect`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

from app.errors import OpenAIError

T = TypeVar("T")

CLIENT_CLOSED = 499  # nginx's status for "client closed the request"; only ever seen in the access log


def client_gone() -> OpenAIError:
    return OpenAIError(CLIENT_CLOSED, "the client closed the request", code="client_closed_request")


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _Watch:
    """What the disconnect listener saw, shared with the request's task."""

    __slots__ = ("settled", "fired", "cancelling", "error")

    def __init__(self) -> None:
        self.settled = False  # the work ended (returned or raised): the listener must not cancel any more
        self.fired = False  # the listener cancelled the work
        self.cancelling = 0  # the task's cancel requests before the listener's
        self.error: BaseException | None = None  # receive failed: an error of its own, not a disconnect


async def _listen(receive: Receive, task: asyncio.Task, watch: _Watch) -> None:
    try:
        await wait_for_disconnect(receive)
    except Exception as exc:  # noqa: BLE001 - handed to the request's task, raised there
        watch.error = exc
    if not watch.settled:
        watch.fired = True
        watch.cancelling = task.cancelling()
        task.cancel()


async def until_disconnect(receive: Receive | None, work: Awaitable[T]) -> T:
    """The result of `work`, or `client_gone()` raised as soon as the client disconnects (work cancelled).

    The work runs in the caller's task (no task of its own); a listener task cancels it when the client
    disconnects, and it has unwound (closed its connection) by the time `client_gone()` is raised. Work
    that finished wins a tie, so a result (an open upstream response) is never dropped unclosed: once the
    work has returned, the listener cancels nothing, and whoever gets the result sees the disconnect next
    and cleans up.
    """
    if receive is None:
        return await work
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("until_disconnect runs in a task")
    watch = _Watch()
    listener = asyncio.ensure_future(_listen(receive, task, watch))
    try:
        return await work
    except asyncio.CancelledError:
        if watch.fired and task.uncancel() <= watch.cancelling:  # the listener's cancel, nobody else's
            watch.fired = False
            if watch.error is not None:
                raise watch.error from None
            raise client_gone() from None
        raise
    finally:
        watch.settled = True
        if not listener.done():
            # Not awaited: it ends at its next step, without a receive (it was cancelled while waiting in one),
            # and waiting for that step cost the request a turn of the event loop.
            listener.cancel()
        elif watch.fired:
            # The listener cancelled this task after the work had already settled some other way
            # (an exception of its own): take the cancel back, the work's own outcome stands.
            watch.fired = False
            task.uncancel()
