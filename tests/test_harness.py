"""Runtime behaviour through the event interface in process, and the same over real sockets.

Each scenario runs twice: through ``stateroom.testing.TestClient``, which drives the
runtime by the interface the network server uses (no sockets, no parsing), and
against a real server over real sockets. Equal results mean the interface carries
everything the network does: event order and the input gate, eviction, reset after
a failed ``blockConcurrencyWhile()``, and the wake of a hibernated object.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import pytest
import websockets

from stateroom.runtime.options import RuntimeOptions
from stateroom.testing import TestClient, TestSocket
from support import RunningServer, fetch, serve

APP = "tests/apps/seam"
TIMEOUT = "0.2"


class Socket(Protocol):
    async def send(self, message: str) -> None: ...
    async def receive(self) -> str | bytes: ...
    async def close(self) -> None: ...


class Driver(Protocol):
    async def fetch(self, path: str) -> tuple[int, str]: ...
    async def websocket(self, path: str) -> Socket: ...
    async def evicted(self) -> None: ...
    async def hibernated(self) -> None: ...


# -- in process ------------------------------------------------------------------------


class _InProcessSocket:
    def __init__(self, socket: TestSocket) -> None:
        self.socket = socket

    async def send(self, message: str) -> None:
        self.socket.send(message)

    async def receive(self) -> str | bytes:
        return await self.socket.receive()

    async def close(self) -> None:
        self.socket.close()
        await self.socket.wait_closed()


class InProcess:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def fetch(self, path: str) -> tuple[int, str]:
        response = await self.client.fetch(path)
        return response.status, await response.text()

    async def websocket(self, path: str) -> Socket:
        return _InProcessSocket(await self.client.websocket(path))

    async def _until(self, done: Callable[[Any], bool]) -> None:
        assert self.client.worker is not None
        hosts = self.client.worker.namespaces["OBJ"].hosts
        for _ in range(500):
            if all(done(host) for host in hosts.values()):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the object never left memory")

    async def evicted(self) -> None:
        await self._until(lambda host: False)  # evicted: no host at all

    async def hibernated(self) -> None:
        await self._until(lambda host: host.instance is None)


@asynccontextmanager
async def in_process() -> AsyncIterator[Driver]:
    options = RuntimeOptions(idle_timeout=float(TIMEOUT), hibernation_timeout=float(TIMEOUT))
    async with TestClient(APP, options=options) as client:
        yield InProcess(client)


# -- over real sockets -----------------------------------------------------------------


class _NetworkSocket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, message: str) -> None:
        await self.ws.send(message)

    async def receive(self) -> str | bytes:
        return await asyncio.wait_for(self.ws.recv(), 5)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.ws.close()


class OverSockets:
    def __init__(self, srv: RunningServer) -> None:
        self.srv = srv

    async def fetch(self, path: str) -> tuple[int, str]:
        return await asyncio.to_thread(fetch, self.srv, path)

    async def websocket(self, path: str) -> Socket:
        return _NetworkSocket(await websockets.connect(self.srv.ws_url + path))

    async def evicted(self) -> None:
        await asyncio.to_thread(self.srv.wait_for_log, r"Evicting idle object")

    async def hibernated(self) -> None:
        await asyncio.to_thread(self.srv.wait_for_log, r"Hibernating object")


@asynccontextmanager
async def over_sockets() -> AsyncIterator[Driver]:
    args = ("--idle-timeout", TIMEOUT, "--hibernation-timeout", TIMEOUT, "--log-level", "debug")
    with serve(APP, "--in-memory", *args) as srv:
        yield OverSockets(srv)


DRIVERS = [pytest.param(in_process, id="in-process"), pytest.param(over_sockets, id="sockets")]
Scenario = Callable[[Driver], Awaitable[None]]


def run(make: Callable[[], Any], scenario: Scenario) -> None:
    async def main() -> None:
        async with make() as driver:
            await scenario(driver)

    asyncio.run(main())


# -- scenarios ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", DRIVERS)
def test_events_wait_for_the_gate_and_keep_their_order(make: Callable[[], Any]) -> None:
    async def scenario(d: Driver) -> None:
        ws = await d.websocket("/a/ws")
        await ws.send("gate")  # blockConcurrencyWhile() for 0.1 s
        assert await ws.receive() == "gate closed"
        request = asyncio.ensure_future(d.fetch("/a/fast"))
        for n in range(5):
            await ws.send(str(n))
        assert [await ws.receive() for _ in range(5)] == [f"1:{n}" for n in range(5)]
        assert await request == (200, "fast")
        log = (await d.fetch("/a/log"))[1]
        events = re.findall(r'"([^"]+)"', log)
        # Nothing ran inside the critical section; the socket's messages kept their order.
        assert events[:2] == ["gate-start", "gate-end"]
        assert [e for e in events if e.isdigit()] == ["0", "1", "2", "3", "4"]
        assert sorted(events[2:]) == sorted(["0", "1", "2", "3", "4", "fast"])
        await ws.close()

    run(make, scenario)


@pytest.mark.parametrize("make", DRIVERS)
def test_an_idle_object_is_evicted_and_constructed_again(make: Callable[[], Any]) -> None:
    async def scenario(d: Driver) -> None:
        first = int((await d.fetch("/b/generation"))[1])
        await d.evicted()
        assert int((await d.fetch("/b/generation"))[1]) > first

    run(make, scenario)


@pytest.mark.parametrize("make", DRIVERS)
def test_a_failed_block_concurrency_while_resets_the_object(make: Callable[[], Any]) -> None:
    async def scenario(d: Driver) -> None:
        first = int((await d.fetch("/c/generation"))[1])
        assert await d.fetch("/c/fail") == (500, "failed")
        # As Cloudflare documents: the callback threw, so the object was reset.
        assert int((await d.fetch("/c/generation"))[1]) > first

    run(make, scenario)


@pytest.mark.parametrize("make", DRIVERS)
def test_a_message_wakes_a_hibernated_object(make: Callable[[], Any]) -> None:
    async def scenario(d: Driver) -> None:
        ws = await d.websocket("/d/hws")
        await ws.send("x")
        first = int(str(await ws.receive()).split(":")[0])
        await d.hibernated()
        await ws.send("y")
        generation, _, text = str(await ws.receive()).partition(":")
        assert (int(generation) > first, text) == (True, "y")
        await ws.close()

    run(make, scenario)
