"""WebSocket hibernation over real sockets: wake, tags, attachments, auto-response."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from support import RunningServer, fetch, serve

APP = "tests/apps/hibernate"


@pytest.fixture
def srv() -> Iterator[RunningServer]:
    with serve(APP, "--hibernation-timeout", "0.2", "--log-level", "debug") as server:
        yield server


def test_sockets_survive_hibernation_with_tags_and_attachments(srv: RunningServer) -> None:
    async def run() -> None:
        a = await websockets.connect(f"{srv.ws_url}/ws?tags=red,blue&name=alice")
        b = await websockets.connect(f"{srv.ws_url}/ws?tags=blue&name=bob")
        await a.send("constructed")
        constructed = int(await a.recv())
        assert fetch(srv, "/count")[1] == "2"
        assert fetch(srv, "/count?tag=red")[1] == "1"
        assert fetch(srv, "/count?tag=blue")[1] == "2"
        srv.wait_for_log(r"Hibernating object .* \(2 sockets\)")
        # The object is out of memory; the sockets are not.
        await a.send("whoami")
        assert json.loads(await a.recv()) == {"name": "alice", "tags": ["red", "blue"]}
        await a.send("constructed")
        assert int(await a.recv()) == constructed + 1  # the constructor ran again on wake
        # Woken by a socket event, it hibernates again once idle.
        srv.wait_for_log(r"(?s)Hibernating object .*Hibernating object")
        await b.send("tags")
        assert json.loads(await b.recv()) == ["blue"]
        await a.send("all:red")
        assert await a.recv() == "all:red"
        await b.send("all:blue")
        assert await a.recv() == "all:blue" and await b.recv() == "all:blue"
        await b.close(4001)
        assert await a.recv() == "left:4001:bob"
        assert b.close_code == 4001
        await a.close()
        assert fetch(srv, "/count")[1] == "0"

    asyncio.run(run())


def test_auto_response_does_not_wake(srv: RunningServer) -> None:
    async def run() -> None:
        assert fetch(srv, "/auto") == (200, "ok")
        ws = await websockets.connect(f"{srv.ws_url}/ws?name=p")
        await ws.send("autots")
        assert await ws.recv() == "none"
        srv.wait_for_log(r"Hibernating object")
        before = srv.output().count("Chat constructed")
        for _ in range(5):
            await ws.send("ping")
            assert await ws.recv() == "pong"
        assert srv.output().count("Chat constructed") == before  # still hibernated
        await ws.send("autots")
        assert await ws.recv() == "set"
        await ws.close()

    asyncio.run(run())


def test_limits(srv: RunningServer) -> None:
    assert fetch(srv, "/badtags") == (400, "acceptWebSocket(): at most 10 tags per WebSocket")
    status, body = fetch(srv, "/bigattachment")
    assert status == 400 and "the limit is 16384 bytes" in body


def test_unclean_drop_reaches_webSocketClose(srv: RunningServer) -> None:
    async def run() -> None:
        a = await websockets.connect(f"{srv.ws_url}/ws?name=a")
        b = await websockets.connect(f"{srv.ws_url}/ws?name=b")
        srv.wait_for_log(r"Hibernating object")
        b.transport.abort()  # TCP drop, no close frame
        assert await a.recv() == "left:1006:b"
        await a.close()

    asyncio.run(run())


def test_hibernatable_sockets_survive_a_code_reload(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).parent / "apps" / "hibernate", app)
    with serve(app, "--log-level", "debug", command="dev") as srv:

        async def run() -> None:
            ws = await websockets.connect(f"{srv.ws_url}/ws?name=stay")
            await ws.send("echo-1")
            assert await ws.recv() == "echo-1"
            source = app / "worker.py"
            source.write_text(
                source.read_text().replace("ws.send(message)", 'ws.send("v2:" + message)')
            )
            await asyncio.get_running_loop().run_in_executor(
                None, srv.wait_for_log, r"reloaded \(1 hibernatable WebSockets kept open\)"
            )
            await ws.send("echo-2")
            assert await asyncio.wait_for(ws.recv(), 10) == "v2:echo-2"  # same socket, new code
            await ws.send("whoami")
            assert json.loads(await ws.recv())["name"] == "stay"  # attachment kept
            await ws.close()

        asyncio.run(run())


HANDLERS_APP = """
from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.ROOM.getByName("r").fetch(request)


class Room(DurableObject):
    async def fetch(self, request):
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, web_socket=client)

    def command(self, ws, message, handler):
        if message == "instance":
            self.webSocketMessage = self.replacement
        elif message == "none":
            self.webSocketMessage = None
        elif message == "del":
            del self.webSocketMessage
        elif message == "class":
            type(self).webSocketMessage = patched
        ws.send(f"{handler}:{message}")

    async def webSocketMessage(self, ws, message):
        self.command(ws, message, "class")

    async def replacement(self, ws, message):
        self.command(ws, message, "instance")

    async def web_socket_message(self, ws, message):
        self.command(ws, message, "snake")


async def patched(self, ws, message):
    self.command(ws, message, "patched")
"""

HANDLERS_CONFIG = """
name = "handlers"
main = "worker.py"

[[durable_objects.bindings]]
name = "ROOM"
class_name = "Room"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Room"]
"""


def test_the_message_handler_is_looked_up_for_each_message(tmp_path: Path) -> None:
    # As on Cloudflare: a handler set, replaced or removed later handles the next message.
    (tmp_path / "worker.py").write_text(HANDLERS_APP)
    (tmp_path / "wrangler.toml").write_text(HANDLERS_CONFIG)
    steps = [
        ("a", "class:a"),
        ("instance", "class:instance"),
        ("b", "instance:b"),  # an instance attribute shadows the class's method
        ("del", "instance:del"),
        ("c", "class:c"),
        ("none", "class:none"),
        ("d", "snake:d"),  # webSocketMessage is None: web_socket_message() instead
        ("e", "snake:e"),
        ("class", "snake:class"),
        ("f", "snake:f"),
        ("del", "snake:del"),
        ("g", "patched:g"),  # the class's method, replaced while it was shadowed
    ]
    with serve(tmp_path, "--hibernation-timeout", "60") as srv:

        async def run() -> None:
            ws = await websockets.connect(f"{srv.ws_url}/ws")
            for sent, expected in steps:
                await ws.send(sent)
                assert await asyncio.wait_for(ws.recv(), 10) == expected
            await ws.close()

        asyncio.run(run())
        assert "Uncaught exception" not in srv.output()
