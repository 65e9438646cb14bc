"""The socket the supervisor binds for its workers: connections accepted on it send each write at once.

asyncio sets TCP_NODELAY only on accepted sockets of protocol IPPROTO_TCP, and an
accepted socket takes its listener's; without it, Nagle's algorithm held the second
write of every response until the client's delayed ACK, and workers sat idle.
"""

from __future__ import annotations

import asyncio
import socket

from app.workers.serve import listen
from app.workers.worker import SharedListener


async def test_connections_accepted_on_the_shared_socket_have_nodelay():
    listener = listen("127.0.0.1", 0)
    port = listener.getsockname()[1]
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    class Record(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Record, sock=SharedListener(listener), backlog=1)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(accepted, 5) == 1
        writer.close()
    finally:
        server.close()


def test_the_shared_socket_keeps_the_queue_length_the_supervisor_gave_it():
    listener = SharedListener(listen("127.0.0.1", 0))
    listener.listen(1)  # what asyncio calls for backlog=1: must not shrink the queue every worker shares
    port = listener.getsockname()[1]
    clients = []
    try:
        for _ in range(8):  # nobody accepts: with a queue of 1, the kernel would drop the third SYN on
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    finally:
        for client in clients:
            client.close()
        listener.close()
    assert len(clients) == 8
