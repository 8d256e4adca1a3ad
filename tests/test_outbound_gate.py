"""An outbound ``fetch()`` from a Durable Object waits for the object's output gate, as on
Cloudflare: a request made after a storage write leaves only once that write is durable.

In process (the pytest plugin), so that the test can hold a write open; the request goes
to a real server on a loopback socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stateroom import fetch
from stateroom.runtime.context import current_host
from stateroom.testing import run_in_durable_object

pytestmark = pytest.mark.stateroom_app("tests/apps/sockets")


async def test_a_fetch_after_a_write_leaves_once_the_write_is_durable(stateroom_app: Any) -> None:
    released = [False]
    arrivals: list[bool] = []  # for each request: had the write become durable?
    arrived = asyncio.Event()

    async def target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrivals.append(released[0])
        arrived.set()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(target, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def inside(obj: Any, ctx: Any) -> str:
        await ctx.storage.put("opened", True)  # the storage, and its output gate, exist
        gate = current_host.get().output_gate
        token = gate.begin_write()  # a write that is not durable yet
        task = asyncio.ensure_future(fetch(f"http://127.0.0.1:{port}/"))
        for _ in range(20):
            await asyncio.sleep(0)
        with pytest.raises(TimeoutError):  # held: it has not even connected
            await asyncio.wait_for(asyncio.shield(arrived.wait()), 0.2)
        released[0] = True
        gate.write_done(token)
        reply = await task
        return await reply.text()

    try:
        stub = stateroom_app.env.SOCK.getByName("gate")
        assert await run_in_durable_object(stub, inside) == "ok"
        assert arrivals == [True]
    finally:
        server.close()
        await server.wait_closed()
