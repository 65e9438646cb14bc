"""The total time one request may take (`request_deadline_s`), counted from its arrival.

The read timeout only bounds the gap between two upstream bytes, so a slow but
steady engine (or a long base check) could otherwise hold a slot for ever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from app.errors import OpenAIError
from app.serving.exchange import Exchange

T = TypeVar("T")


def deadline_exceeded(exchange: Exchange) -> OpenAIError:
    seconds = exchange.gateway.settings.request_deadline_s
    return OpenAIError(
        504,
        f"the request took longer than this gateway's limit of {seconds:g}s; ask for fewer tokens or retry",
        code="request_deadline_exceeded",
    )


def time_left(exchange: Exchange) -> float:
    return max(0.0, exchange.gateway.settings.request_deadline_s - (time.perf_counter() - exchange.started))


async def within_deadline(exchange: Exchange, work: Awaitable[T]) -> T:
    """The result of `work`, or `deadline_exceeded` once the request's time is up (work cancelled)."""
    try:
        async with asyncio.timeout(time_left(exchange)) as scope:
            return await work
    except TimeoutError:
        if scope.expired():
            raise deadline_exceeded(exchange) from None
        raise  # a TimeoutError of the work's own
