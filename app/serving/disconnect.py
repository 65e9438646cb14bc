"""Race a request's work against its client hanging up, so an abandoned request stops at once.

Starlette does not cancel a handler whose client has gone: without this a
non-streaming request keeps the engine generating to the end and holds its
slot. Cancelling the work closes its httpx request, and vLLM aborts a request
whose connection closes. Only for use after the body has been read: it reads
(and drops) every further ASGI message while it waits for `http.disconnect`.
"""

from __future__ import annotations

import asyncio
import contextlib
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


async def until_disconnect(receive: Receive | None, work: Awaitable[T]) -> T:
    """The result of `work`, or `client_gone()` raised as soon as the client disconnects (work cancelled).

    Work that finished wins a tie, so a result (an open upstream response) is never dropped
    unclosed: whoever gets it sees the disconnect next and cleans up.
    """
    if receive is None:
        return await work
    task = asyncio.ensure_future(work)
    listener = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait((task, listener), return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        listener.result()  # a failing receive is an error of its own, not a disconnect
        raise client_gone()
    finally:
        for pending in (listener, task):
            if not pending.done():
                pending.cancel()
                # Wait for the cancelled work to unwind (close its connection) before going on.
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
