"""`until_disconnect` (app/serving/disconnect.py) at unit level: the work's result comes back, a disconnect
during the work cancels it as `client_gone`, and a message that arrives after the work returned is left for
whoever reads next (the listener is cancelled, not awaited, when the work ends)."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import OpenAIError
from app.serving.disconnect import CLIENT_CLOSED, until_disconnect


def queue_receive() -> tuple[asyncio.Queue, object]:
    queue: asyncio.Queue = asyncio.Queue()

    async def receive():
        return await queue.get()

    return queue, receive


async def test_the_result_comes_back_and_a_later_message_stays_for_the_next_reader():
    queue, receive = queue_receive()
    assert await until_disconnect(receive, asyncio.sleep(0, result=7)) == 7
    queue.put_nowait({"type": "http.disconnect"})
    for _ in range(3):
        await asyncio.sleep(0)  # the cancelled listener's last steps
    assert queue.qsize() == 1
    assert (await receive())["type"] == "http.disconnect"  # the next reader gets it


async def test_a_disconnect_during_the_work_cancels_it_as_client_gone():
    queue, receive = queue_receive()
    cancelled = asyncio.Event()

    async def work():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.01, queue.put_nowait, {"type": "http.disconnect"})
    with pytest.raises(OpenAIError) as caught:
        await until_disconnect(receive, work())
    assert caught.value.status == CLIENT_CLOSED and cancelled.is_set()
    assert asyncio.current_task().cancelling() == 0  # the listener's cancel was taken back
