"""A task an object starts with plain ``asyncio.create_task`` keeps it in memory until it
ends (Cloudflare does not evict an object with work in flight). Over real sockets, with
the server on the test's virtual clock (the pytest plugin's ``stateroom_server``), so
that the idle timeout passes without waiting for it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytestmark = pytest.mark.stateroom_app("tests/apps/tasks")


async def get(server: Any, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return body.decode()


async def test_a_created_task_keeps_its_object_awake(
    stateroom_server: Any, stateroom_clock: Any
) -> None:
    assert await get(stateroom_server, "/spawn") == "spawned"
    assert await get(stateroom_server, "/constructed") == "1"
    await stateroom_clock.advance(300)  # past the idle timeout (70 s)
    host = stateroom_server.client.worker.namespaces["WORKER"].hosts
    assert [h.instance is not None for h in host.values()] == [True]  # still in memory
    assert await get(stateroom_server, "/finish") == "finishing"
    await stateroom_clock.settle()
    await stateroom_clock.advance(300)  # the task has ended: now it may go
    assert [h.instance for h in host.values()] == []  # evicted
    assert await get(stateroom_server, "/spawn") == "spawned"
    assert await get(stateroom_server, "/constructed") == "2"  # constructed again
    await get(stateroom_server, "/finish")
