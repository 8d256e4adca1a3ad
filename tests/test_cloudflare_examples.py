"""Cloudflare's published Python Durable Object examples, run unchanged by stateroom.

The apps under tests/apps/cloudflare/ are vendored with no edits but a header (each
names its source, commit and license): they import ``workers``, ``js`` and
``pyodide.ffi`` and are configured by ``wrangler.jsonc`` with ``main = "src/entry.py"``.
Each is served by ``stateroom serve`` on an ephemeral port and driven over real sockets
(or, for Cloudflare's own tests that define a ``test()`` handler, run by
``stateroom test`` as ``workerd test`` runs them).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets

from support import ROOT, RunningServer, fetch, serve

APPS = ROOT / "tests" / "apps" / "cloudflare"


def run_test_handler(app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``stateroom test APP``: the app's Default.test() in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "stateroom", "test", str(app), "--in-memory", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- python-workers-examples/07-durable-objects ----------------------------------------


def test_07_durable_objects_lists() -> None:
    """The steps of Cloudflare's own test of this example (tests/test_examples.py)."""
    with serve(APPS / "07-durable-objects") as srv:
        assert fetch(srv, "/room-1/show") == (200, "No messages")
        assert fetch(srv, "/room-1/add/hi") == (200, "Message sent")
        assert fetch(srv, "/room-1/show") == (200, "hi")
        assert fetch(srv, "/room-1/add/there") == (200, "Message sent")
        assert fetch(srv, "/room-1/show") == (200, "hi\nthere")
        assert fetch(srv, "/room-2/show") == (200, "No messages")
        status, body = fetch(srv, "/")
        assert status == 400 and body.startswith("Go to /<list_id>/show")
        assert fetch(srv, "/room-1/other") == (404, "Not Found")


def test_07_messages_survive_a_restart(tmp_path: Path) -> None:
    """The list is in the object's storage (put via to_js), not in memory."""
    data = tmp_path / "data"
    with serve(APPS / "07-durable-objects", "--persist-to", str(data)) as srv:
        assert fetch(srv, "/kept/add/one") == (200, "Message sent")
    with serve(APPS / "07-durable-objects", "--persist-to", str(data)) as srv:
        assert fetch(srv, "/kept/show") == (200, "one")


# -- python-workers-examples/15-chatroom -----------------------------------------------


async def _next_json(ws: websockets.ClientConnection) -> dict[str, object]:
    message = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(message, str)
    data = json.loads(message)
    assert isinstance(data, dict)
    return data


def test_15_chatroom_page_and_routes() -> None:
    with serve(APPS / "15-chatroom") as srv:
        with urllib.request.urlopen(srv.url + "/", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html"
            page = response.read().decode()
        source = (APPS / "15-chatroom" / "src" / "chatroom.html").read_text()
        assert page == source  # read next to src/entry.py through Path(__file__)
        assert fetch(srv, "/room/") == (400, "Room name required")
        assert fetch(srv, "/room/lobby") == (400, "Expected WebSocket upgrade")
        assert fetch(srv, "/nowhere") == (
            404,
            "Not found. Use /room/<name> to connect to a chatroom.",
        )


def test_15_chatroom_broadcast_and_history() -> None:
    async def scenario(srv: RunningServer) -> None:
        url = f"{srv.ws_url}/room/lobby"
        async with websockets.connect(url) as alice:
            welcome = await _next_json(alice)
            assert welcome["type"] == "system" and welcome["text"] == "Connected to chatroom"
            async with websockets.connect(url) as bob:
                assert (await _next_json(bob))["type"] == "system"
                await alice.send(json.dumps({"username": "alice", "text": "hello"}))
                for ws in (alice, bob):
                    message = await _next_json(ws)
                    assert message["type"] == "message"
                    assert (message["username"], message["text"]) == ("alice", "hello")
                    assert isinstance(message["timestamp"], str)
                await bob.send(json.dumps({"text": "anon"}))
                assert (await _next_json(alice))["username"] == "Anonymous"
                assert (await _next_json(bob))["username"] == "Anonymous"
            # A newcomer first gets the history, then the welcome.
            async with websockets.connect(url) as carol:
                history = await _next_json(carol)
                assert history["type"] == "history"
                texts = [m["text"] for m in history["messages"]]  # type: ignore[attr-defined]
                assert texts == ["hello", "anon"]
                assert (await _next_json(carol))["type"] == "system"
            # Another room is another object, with no history.
            async with websockets.connect(f"{srv.ws_url}/room/other") as dave:
                assert (await _next_json(dave))["type"] == "system"
            # Bad JSON is caught by the example's handler; the socket stays usable.
            await alice.send("not json")
            await alice.send(json.dumps({"username": "alice", "text": "still here"}))
            assert (await _next_json(alice))["text"] == "still here"
            await alice.close(1000, "bye")
            assert alice.close_code == 1000

    with serve(APPS / "15-chatroom") as srv:
        asyncio.run(scenario(srv))
        srv.wait_for_log(r"Client disconnected\. Active sessions: \d")


# -- workerd: src/workerd/server/tests/python/durable-object ---------------------------


def test_workerd_durable_object_test_handler_passes() -> None:
    """fetch and RPC to a Durable Object, blockConcurrencyWhile in the constructor,
    pyodide.ffi.run_sync, a mixin method over RPC, FetchResponse, an un-awaited
    storage.setAlarm(Date.now() + 100) and the alarm() it triggers."""
    result = run_test_handler(APPS / "workerd-durable-object")
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stderr


# -- workerd: src/workerd/server/tests/python/durable-object-websocket -----------------


def test_workerd_durable_object_websocket() -> None:
    """The Python half of workerd's test; its tester.js half, as a real client."""

    async def scenario(srv: RunningServer) -> None:
        async with websockets.connect(f"{srv.ws_url}/websocket") as ws:
            await ws.send("test")
            assert await asyncio.wait_for(ws.recv(), 10) == "hello"
            await ws.close()

    with serve(APPS / "workerd-durable-object-websocket") as srv:
        asyncio.run(scenario(srv))
        request = urllib.request.Request(srv.url + "/websocket")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 426
        assert info.value.reason == "Expected Upgrade"
        assert info.value.headers["Content-Type"] == "text/plain"
        assert fetch(srv, "/elsewhere") == (404, "Not found")
        srv.wait_for_log("Received in Python DO WS message:  test")
        srv.wait_for_log("Closed in Python DO WS")


# -- workers-py's Durable Object tests, as our own apps (tests/apps/workers-sdk) -------
# Those files carry no license of their own, so they are not vendored: each app makes
# the same API calls as the original test, written anew.

SDK_APPS = ROOT / "tests" / "apps" / "workers-sdk"


@pytest.mark.parametrize("app", ["abort", "inheritance", "storage"])
def test_workers_sdk_durable_object_apps(app: str) -> None:
    result = run_test_handler(SDK_APPS / app)
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stderr


def test_stateroom_test_reports_a_failing_handler(tmp_path: Path) -> None:
    (tmp_path / "wrangler.jsonc").write_text('{"name": "t", "main": "worker.py"}')
    (tmp_path / "worker.py").write_text(
        "from workers import WorkerEntrypoint\n\n"
        "class Default(WorkerEntrypoint):\n"
        "    async def test(self):\n"
        "        assert 1 + 1 == 3, 'arithmetic'\n"
    )
    result = run_test_handler(tmp_path)
    assert result.returncode == 1
    assert "AssertionError: arithmetic" in result.stderr and "FAIL" in result.stderr
    (tmp_path / "worker.py").write_text(
        "from workers import WorkerEntrypoint\n\nclass Default(WorkerEntrypoint):\n    pass\n"
    )
    result = run_test_handler(tmp_path)
    assert result.returncode == 2
    assert "no test() handler" in result.stderr


# -- python-workers-examples/14-websocket-stream-consumer ------------------------------
# A Durable Object that keeps an outgoing WebSocket (js.WebSocket.new) to Bluesky's
# Jetstream. Its one changed line takes the URL from env: here a local Jetstream stand-in.


class _Jetstream:
    """A WebSocket server on 127.0.0.1 that sends Jetstream-shaped events, in a thread."""

    EVENTS = (
        {"kind": "identity", "time_us": 1700000000000001},
        {
            "kind": "commit",
            "time_us": 1700000000000002,
            "commit": {"collection": "app.bsky.feed.post", "record": {"text": "hello"}},
        },
        {"kind": "commit", "time_us": 1700000000000003, "commit": {"collection": "other"}},
    )

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.ready = threading.Event()
        self.close_now: asyncio.Event | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handler(self, connection: Any) -> None:
        self.paths.append(connection.request.path)
        for event in self.EVENTS:
            await connection.send(json.dumps(event))
        assert self.close_now is not None
        await self.close_now.wait()
        self.close_now.clear()
        await connection.close(1000, "bye")

    async def _start(self) -> int:
        from websockets.asyncio.server import serve as ws_serve

        self.close_now = asyncio.Event()
        self.server = await ws_serve(self._handler, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def start(self) -> int:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def close_connections(self) -> None:
        assert self.close_now is not None
        self.loop.call_soon_threadsafe(self.close_now.set)

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self.close_now is not None
            self.close_now.set()
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_14_websocket_stream_consumer(tmp_path: Path) -> None:
    jetstream = _Jetstream()
    port = jetstream.start()
    try:
        app = tmp_path / "app"
        shutil.copytree(APPS / "14-websocket-stream-consumer", app)
        config = (app / "wrangler.jsonc").read_text()
        url = f"ws://127.0.0.1:{port}/subscribe?wantedCollections=app.bsky.feed.post"
        (app / "wrangler.jsonc").write_text(
            config.replace(
                '"durable_objects"', f'"vars": {{"JETSTREAM_URL": "{url}"}},\n\t"durable_objects"'
            )
        )
        with serve(app) as srv:
            # The first request connects; the open event comes once the handshake is done.
            assert fetch(srv, "/status")[0] == 200
            srv.wait_for_log("Connected to Bluesky Jetstream firehose!")
            srv.wait_for_log(r"Post record \{'text': 'hello'\}")
            assert fetch(srv, "/status") == (200, "Firehose status: connected"), srv.output()
            assert fetch(srv, "/") == (200, "Available endpoints: /status")
            assert jetstream.paths == ["/subscribe?wantedCollections=app.bsky.feed.post"]
            # The server closes: the close listener aborts the object (ctx.abort()).
            jetstream.close_connections()
            srv.wait_for_log("WebSocket closed: code=1000, reason=bye")
            srv.wait_for_log(r"ctx\.abort\(\): WebSocket closed")
            # A new instance reconnects from the cursor kept with storage.kv.put().
            assert fetch(srv, "/status")[0] == 200
            srv.wait_for_log(r"resuming from timestamp: 1700000000000003")
            connected = "Connected to Bluesky Jetstream firehose!"
            srv.wait_for_log(f"{connected}(?:.|\n)*{connected}")
            assert fetch(srv, "/status") == (200, "Firehose status: connected")
            assert jetstream.paths[1] == (
                "/subscribe?wantedCollections=app.bsky.feed.post&cursor=1700000000000003"
            )
    finally:
        jetstream.stop()


# -- Cloudflare's documentation examples (their Python tabs), as our own apps ----------


def test_docs_build_a_counter() -> None:
    with serve(SDK_APPS / "docs-counter") as srv:
        assert fetch(srv, "/?name=A") == (200, "Durable Object 'A' count: 0")
        assert fetch(srv, "/increment?name=A") == (200, "Durable Object 'A' count: 1")
        assert fetch(srv, "/increment?name=A") == (200, "Durable Object 'A' count: 2")
        assert fetch(srv, "/decrement?name=A") == (200, "Durable Object 'A' count: 0")
        assert fetch(srv, "/increment?name=B") == (200, "Durable Object 'B' count: 1")
        assert fetch(srv, "/?name=A") == (200, "Durable Object 'A' count: 0")
        assert fetch(srv, "/other?name=A") == (404, "Not found")
        assert fetch(srv, "/") == (200, "Select a Durable Object with ?name=A")


def test_docs_sql_rows_by_attribute_and_module_env() -> None:
    with serve(SDK_APPS / "docs-sql") as srv:
        assert fetch(srv, "/anything") == (200, "Hello, World!")
        assert fetch(srv, "/hello/stateroom") == (200, "Hello, stateroom!")


def test_docs_websocket_hibernation_server() -> None:
    async def receive(ws: websockets.ClientConnection) -> str:
        message = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(message, str)
        return message

    async def scenario(srv: RunningServer) -> None:
        url = f"{srv.ws_url}/websocket"
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            await a.send("hi")
            to_sender = await receive(a)
            assert to_sender.startswith("hi from ") and to_sender.endswith(
                "to: the sender. Total: 2"
            )
            session_a = to_sender.split()[2]
            assert await receive(b) == f"hi from {session_a} to: the others. Total: 2"
            # The auto-response answers without waking the object.
            await b.send("ping")
            assert await receive(b) == "pong"
            # Both sockets stay open while the object hibernates; the next message
            # constructs it again, and its constructor finds both sessions.
            srv.wait_for_log("Hibernating object")
            await b.send("after")
            assert (await receive(b)).endswith("to: the sender. Total: 2")
            assert (await receive(a)).endswith("to: the others. Total: 2")
            srv.wait_for_log("constructed with 2 sessions")
            await a.close(1000, "done")
            assert a.close_code == 1000

    with serve(
        SDK_APPS / "docs-hibernation", "--hibernation-timeout", "0.2", "--log-level", "debug"
    ) as srv:
        assert fetch(srv, "/websocket")[0] == 426
        assert fetch(srv, "/") == (
            200,
            "Supported endpoints:\n/websocket: Expects a WebSocket upgrade request",
        )
        asyncio.run(scenario(srv))


def test_14_when_the_connection_fails(tmp_path: Path) -> None:
    """Nothing listens at the URL: the error listener runs (and aborts the object)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = tmp_path / "app"
    shutil.copytree(APPS / "14-websocket-stream-consumer", app)
    config = (app / "wrangler.jsonc").read_text()
    (app / "wrangler.jsonc").write_text(
        config.replace(
            '"durable_objects"',
            f'"vars": {{"JETSTREAM_URL": "ws://127.0.0.1:{port}/subscribe"}},\n\t"durable_objects"',
        )
    )
    with serve(app) as srv:
        assert fetch(srv, "/status") == (200, "Firehose status: disconnected")
        srv.wait_for_log(r"WebSocket error: Event\('error'")
        srv.wait_for_log(r"ctx\.abort\(\): WebSocket error occurred")
        assert "Connected to Bluesky" not in srv.output()
