"""Messages an object sends before its 101 response has left reach the client, in order.

The usual chat room replays its history to a joiner and tells the room someone joined,
both while handling the upgrade request: before the 101 is written. Those messages
must arrive right after the 101 and before anything sent later, for sockets accepted
with ``accept()`` and with ``ctx.acceptWebSocket()``, when the object wrote storage
first (its sends wait on the output gate), and when the object was cold. workerd
delivers them; the same scenarios run against it in ``test_parity_early_sends``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from rawws import RawClient, close_frame
from reference_runtime import REFERENCE_DIR, running_workerd
from stateroom.testing import TestClient, TestSocket
from support import serve

APP = "tests/apps/chatroom"
Addr = tuple[str, int]


@pytest.fixture(scope="module")
def stateroom() -> Iterator[Addr]:
    with serve(APP, "--in-memory") as srv:
        yield srv.host, srv.port


def _join(addr: Addr, room: str, name: str, mode: str, store: bool) -> RawClient:
    path = f"/ws?room={room}&name={name}&mode={mode}" + ("&store=1" if store else "")
    client = RawClient(*addr, path)
    assert client.handshake.startswith(b"HTTP/1.1 101 ")
    return client


def _texts(client: RawClient, n: int) -> list[str]:
    frames = [client.recv_frame() for _ in range(n)]
    assert all(b0 == 0x81 for b0, _ in frames), frames
    return [payload.decode() for _, payload in frames]


def _leave(client: RawClient) -> tuple[int, bytes]:
    client.send(close_frame(1000))
    reply = client.recv_frame()
    client.close()
    return reply


def chat_scenario(addr: Addr, mode: str, store: bool) -> list[object]:
    """Two joiners on a cold room, a message, two leaves: what each client receives."""
    room = uuid.uuid4().hex  # a room no one has used: its object is cold
    seen: list[object] = []
    alice = _join(addr, room, "alice", mode, store)
    seen.append(("alice", _texts(alice, 1)))
    bob = _join(addr, room, "bob", mode, store)
    seen.append(("bob", _texts(bob, 2)))
    seen.append(("alice", _texts(alice, 1)))
    bob.send_text("hi")
    # Sent after the 101: it follows the early messages, on both sockets.
    seen.append(("bob", _texts(bob, 1)))
    seen.append(("alice", _texts(alice, 1)))
    seen.append(("bob", _leave(bob)))
    seen.append(("alice", _leave(alice)))
    return seen


EXPECTED = [
    ("alice", ["joined: alice"]),
    ("bob", ["history: joined: alice", "joined: bob"]),
    ("alice", ["joined: bob"]),
    ("bob", ["bob: hi"]),
    ("alice", ["bob: hi"]),
    ("bob", (0x88, b"\x03\xe8bye")),
    ("alice", (0x88, b"\x03\xe8bye")),
]

CASES = [
    pytest.param("accept", False, id="accept"),
    pytest.param("hibernate", False, id="acceptWebSocket"),
    pytest.param("accept", True, id="accept-after-storage-write"),
    pytest.param("hibernate", True, id="acceptWebSocket-after-storage-write"),
]


@pytest.mark.parametrize(("mode", "store"), CASES)
def test_messages_sent_before_the_101_arrive_first(stateroom: Addr, mode: str, store: bool) -> None:
    assert chat_scenario(stateroom, mode, store) == EXPECTED


@pytest.fixture(scope="module")
def workerd() -> Iterator[Addr]:
    with running_workerd(REFERENCE_DIR / "chatroom.capnp") as addr:
        yield addr


@pytest.mark.parametrize(("mode", "store"), CASES)
def test_parity_early_sends(workerd: Addr, stateroom: Addr, mode: str, store: bool) -> None:
    """workerd (reference/chatroom.js) and stateroom deliver the same frames."""
    assert chat_scenario(workerd, mode, store) == chat_scenario(stateroom, mode, store)


# -- through the event interface, in process ----------------------------------------------


@pytest.mark.parametrize(("mode", "store"), CASES)
def test_early_sends_through_the_event_interface(mode: str, store: bool) -> None:
    """The same scenario through stateroom.testing: accept_socket flushes the early sends."""

    async def scenario() -> list[object]:
        seen: list[object] = []
        async with TestClient(APP) as client:

            async def join(name: str) -> TestSocket:
                query = f"room=r&name={name}&mode={mode}" + ("&store=1" if store else "")
                return await client.websocket(f"/ws?{query}")

            async def texts(ws: TestSocket, n: int) -> list[str]:
                return [str(await ws.receive()) for _ in range(n)]

            async def leave(ws: TestSocket) -> tuple[int, bytes]:
                ws.close(1000)
                code, reason = await ws.wait_closed()
                assert code is not None
                return 0x88, code.to_bytes(2, "big") + reason.encode()

            alice = await join("alice")
            seen.append(("alice", await texts(alice, 1)))
            bob = await join("bob")
            seen.append(("bob", await texts(bob, 2)))
            seen.append(("alice", await texts(alice, 1)))
            bob.send("hi")
            seen.append(("bob", await texts(bob, 1)))
            seen.append(("alice", await texts(alice, 1)))
            seen.append(("bob", await leave(bob)))
            seen.append(("alice", await leave(alice)))
        return seen

    assert asyncio.run(scenario()) == EXPECTED
