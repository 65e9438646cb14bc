"""The sockets the supervisor binds for its workers, one per worker on the one port.

- New connections spread over them (SO_REUSEPORT): with one shared socket, a burst of
  connections went to whichever worker woke first (measured: 3,962 requests to one
  worker, 10 to the other, over a client's 32 keep-alive connections).
- Connections accepted on them send each write at once: asyncio sets TCP_NODELAY only on
  accepted sockets of protocol IPPROTO_TCP, and an accepted socket takes its listener's;
  without it Nagle's algorithm held each response's second write for the client's delayed
  ACK, and workers sat idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from app.workers.serve import listen
from moeprune.errors import UserError


def test_new_connections_spread_over_the_workers_sockets():
    sockets = listen("127.0.0.1", 0, 2)
    port = sockets[0].getsockname()[1]
    assert sockets[1].getsockname()[1] == port
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
    try:
        waiting = {}
        for index, sock in sockets.items():
            sock.setblocking(False)
            count = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    accepted, _ = sock.accept()
                    accepted.close()
                    count += 1
            waiting[index] = count
        assert sum(waiting.values()) == 64 and min(waiting.values()) > 0, waiting
    finally:
        for client in clients:
            client.close()
        for sock in sockets.values():
            sock.close()


async def test_connections_accepted_on_a_worker_socket_have_nodelay():
    sockets = listen("127.0.0.1", 0, 1)
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    class Record(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Record, sock=sockets[0])
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", sockets[0].getsockname()[1])
        assert await asyncio.wait_for(accepted, 5) == 1
        writer.close()
    finally:
        server.close()


def test_a_port_another_gateway_listens_on_is_refused_not_shared():
    with socket.socket() as taken:
        # The other holder allows port sharing too, as a running `--workers` gateway's sockets do.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}: .*pick another --port"):
            listen("127.0.0.1", port, 2)
