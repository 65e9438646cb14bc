"""Read server-sent events at the byte level: lines end at b"\\n" (b"\\r\\n" tolerated), nowhere else.

httpx's `aiter_lines` uses `str.splitlines`, which also breaks at U+2028,
U+2029, U+0085, \\x1c-\\x1e and others that vLLM leaves unescaped inside JSON
strings; a token holding one would cut its chunk in two and abort the stream.

`SSEParser` is fed the body as it arrives and returns the events each piece
completed, so the relay handles every event of one read together (and sends
them on in one write); `sse_data` is the same as an async iterator of events.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

MAX_EVENT_BYTES = 8 * 1024 * 1024  # a runaway line from a broken engine must not exhaust memory


class SSEParser:
    """Incremental: `feed(piece)` -> the data of each event the piece completed; `end()` -> a last one left
    unterminated when the body ended."""

    __slots__ = ("max_event_bytes", "_pending", "_data", "_size")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._pending = b""  # the start of a line whose end has not arrived
        self._data: list[bytes] = []  # the `data:` lines of the event in progress
        self._size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._pending += chunk
            if len(self._pending) + self._size > self.max_event_bytes:
                raise ValueError(f"a server-sent event is longer than {self.max_event_bytes} bytes")
            return []
        lines = (self._pending + chunk if self._pending else chunk).split(b"\n")
        self._pending = lines.pop()
        events: list[bytes] = []
        data, size = self._data, self._size
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # a blank line ends the event
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data, size = [], 0
            elif line.startswith(b"data:"):
                value = line[6:] if line.startswith(b"data: ") else line[5:]
                data.append(value)
                size += len(value)
                if size > self.max_event_bytes:
                    raise ValueError(f"a server-sent event is longer than {self.max_event_bytes} bytes")
            # comments (":...") and the other fields (event:, id:, retry:) carry nothing the relay uses
        self._data, self._size = data, size
        return events

    def end(self) -> list[bytes]:
        """After the body's last byte: a final event that came without its closing blank line."""
        line = self._pending[:-1] if self._pending.endswith(b"\r") else self._pending
        data = self._data
        if line.startswith(b"data:"):
            data.append(line[6:] if line.startswith(b"data: ") else line[5:])
        self._pending, self._data, self._size = b"", [], 0
        return [b"\n".join(data)] if data else []


async def sse_events(
    chunks: AsyncIterator[bytes], max_event_bytes: int = MAX_EVENT_BYTES
) -> AsyncGenerator[list[bytes], None]:
    """The events of a body, as the lists each read completed (never empty)."""
    parser = SSEParser(max_event_bytes)
    async for chunk in chunks:
        events = parser.feed(chunk)
        if events:
            yield events
    events = parser.end()
    if events:
        yield events


async def sse_data(chunks: AsyncIterator[bytes], max_event_bytes: int = MAX_EVENT_BYTES) -> AsyncGenerator[bytes, None]:
    """Yield the data of each event (its `data:` lines joined by b"\\n"), as raw bytes."""
    async for events in sse_events(chunks, max_event_bytes):
        for event in events:
            yield event
