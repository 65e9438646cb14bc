"""Read server-sent events at the byte level: lines end at b"\\n" (b"\\r\\n" tolerated), nowhere else.

httpx's `aiter_lines` uses `str.splitlines`, which also breaks at U+2028,
U+2029, U+0085, \\x1c-\\x1e and others that vLLM leaves unescaped inside JSON
strings; a token holding one would cut its chunk in two and abort the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

MAX_EVENT_BYTES = 8 * 1024 * 1024  # a runaway line from a broken engine must not exhaust memory


async def sse_data(chunks: AsyncIterator[bytes], max_event_bytes: int = MAX_EVENT_BYTES) -> AsyncIterator[bytes]:
    """Yield the data of each event (its `data:` lines joined by b"\\n"), as raw bytes."""
    pending = bytearray()
    data: list[bytes] = []
    size = 0
    async for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk:
            if len(pending) + size > max_event_bytes:
                raise ValueError(f"a server-sent event is longer than {max_event_bytes} bytes")
            continue
        *lines, rest = pending.split(b"\n")
        pending = bytearray(rest)
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:  # a blank line ends the event
                if data:
                    yield b"\n".join(data)
                data, size = [], 0
            elif line.startswith(b"data:"):
                value = line[5:]
                value = value[1:] if value.startswith(b" ") else value
                data.append(value)
                size += len(value)
                if size > max_event_bytes:
                    raise ValueError(f"a server-sent event is longer than {max_event_bytes} bytes")
            # comments (":...") and the other fields (event:, id:, retry:) carry nothing the relay uses
    line = pending[:-1] if pending.endswith(b"\r") else pending
    if line.startswith(b"data:"):
        value = bytes(line[5:])
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:  # a stream that ended without the final blank line
        yield b"\n".join(data)
