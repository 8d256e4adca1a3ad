"""The object runtime over real sockets: ids, RPC, event order, eviction, broadcast."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
import websockets

from support import RunningServer, fetch, serve

APP = "tests/apps/kitchen"


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with serve(APP, "--idle-timeout", "0.3", "--log-level", "debug") as server:
        yield server


def test_vars_on_env(srv: RunningServer) -> None:
    assert fetch(srv, "/vars") == (200, "hello")


def test_ids(srv: RunningServer) -> None:
    status, body = fetch(srv, "/ids")
    info = json.loads(body)
    assert status == 200
    assert len(info["a"]) == 64 and all(c in "0123456789abcdef" for c in info["a"])
    assert info["a"] == info["a_again"] != info["b"]
    assert info["name"] == "a"
    assert info["roundtrip"] is True
    assert info["unique_len"] == 64
    assert "not valid for this namespace" in info["cross"]
    assert info["bad"] == "Invalid Durable Object ID: must be 64 hex digits"


def test_rpc_and_state_per_object(srv: RunningServer) -> None:
    assert fetch(srv, "/counter/x/rpc?5") == (200, "5")
    assert fetch(srv, "/counter/x/rpc?2") == (200, "7")
    assert fetch(srv, "/counter/y/rpc") == (200, "1")
    assert fetch(srv, "/counter/x/value") == (200, "7")
    assert fetch(srv, "/counter/x/missing") == (
        500,
        'The RPC receiver does not implement the method "nope".',
    )


def test_exception_in_object_is_500(srv: RunningServer) -> None:
    status, body = fetch(srv, "/counter/z/boom")
    assert status == 500
    assert re.fullmatch(r"Internal Server Error \(request id [0-9a-f]{16}\)", body), body


def test_events_start_in_arrival_order(srv: RunningServer) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        slow = loop.run_in_executor(None, fetch, srv, "/counter/order/slow")
        srv.wait_for_log("")  # no-op; the slow request is in flight once its thread runs
        await asyncio.sleep(0)
        await slow
        await loop.run_in_executor(None, fetch, srv, "/counter/order/fast")

    asyncio.run(run())
    assert json.loads(fetch(srv, "/counter/order/log")[1]) == ["slow-start", "slow-end", "fast"]


def test_one_instance_per_id_and_eviction_after_idle(srv: RunningServer) -> None:
    object_id = fetch(srv, "/counter/evict/id")[1]
    first = fetch(srv, "/counter/evict/generation")[1]
    assert fetch(srv, "/counter/evict/generation")[1] == first  # same live instance
    fetch(srv, "/counter/evict/rpc?3")
    srv.wait_for_log(rf"Evicting idle object {object_id}", timeout=10)
    assert fetch(srv, "/counter/evict/value")[1] == "0"  # state was in memory only
    assert fetch(srv, "/counter/evict/generation")[1] != first  # the constructor ran again


def test_open_websocket_pins_object(srv: RunningServer) -> None:
    object_id = fetch(srv, "/room/pinned/id")[1]

    async def run() -> None:
        async with websockets.connect(f"{srv.ws_url}/room/pinned") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await asyncio.sleep(1.0)  # over three idle timeouts: the open socket must pin it
            assert fetch(srv, "/room/pinned")[1] == "1"
            assert f"Evicting idle object {object_id}" not in srv.output()

    asyncio.run(run())
    srv.wait_for_log(rf"Evicting idle object {object_id}", timeout=10)


def test_broadcast_room(srv: RunningServer) -> None:
    async def run() -> None:
        async with (
            websockets.connect(f"{srv.ws_url}/room/chat") as a,
            websockets.connect(f"{srv.ws_url}/room/chat") as b,
            websockets.connect(f"{srv.ws_url}/room/chat") as c,
        ):
            await a.send("from a")
            for ws in (a, b, c):
                assert await ws.recv() == "from a"
            await c.send(b"\x00bin")
            for ws in (a, b, c):
                assert await ws.recv() == b"\x00bin"
        assert fetch(srv, "/room/chat")[1] in ("0", "3")

    asyncio.run(run())


def test_socket_events_run_as_their_object(srv: RunningServer) -> None:
    # Socket events from the network run in their object's context: what the handler
    # starts (a task, a WebSocketPair) belongs to that object too.
    async def run() -> None:
        async with websockets.connect(f"{srv.ws_url}/room/whoami") as ws:
            for _ in range(3):  # the first message creates the context, later ones reuse it
                await ws.send("whoami")
                reply = json.loads(await ws.recv())
                assert reply == {"handler": True, "task": True, "new_pair": True}

    asyncio.run(run())


def test_a_caller_that_gives_up_does_not_lock_the_object(srv: RunningServer) -> None:
    """A request queued behind blockConcurrencyWhile() whose client hangs up must not
    leave the object's event queue stuck."""
    object_id = fetch(srv, "/counter/cancel/id")[1]
    blocker = threading.Thread(target=fetch, args=(srv, "/counter/cancel/block"))
    blocker.start()
    srv.wait_for_log(rf"block-start {object_id}")
    with socket.create_connection((srv.host, srv.port)) as sock:
        sock.sendall(b"GET /counter/cancel/value HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    blocker.join(10)
    assert fetch(srv, "/counter/cancel/value") == (200, "0")
