"""An in-process test client: drive an application through the event interface, no sockets.

Starlette's ``TestClient`` in spirit. The client talks to the runtime exactly as the
network server does, through ``stateroom.runtime.interface.Events`` (here the
in-process ``LocalEvents``): a request goes to ``fetch``; an upgrade is accepted with
``accept_socket`` and its socket is driven by handle with ``socket_message``,
``socket_close`` and ``socket_end``. What the runtime sends comes back through the
socket's sink. Nothing is parsed or framed, so a test reads what the runtime did,
and runs in milliseconds::

    async with TestClient("examples/websocket-server") as client:
        ws = await client.websocket("/websocket")
        ws.send("hi")
        assert await ws.receive() == "[Durable Object]: hi"
        print((await client.fetch("/getCurrentConnections")).status)
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType

from stateroom.api.headers import HeadersInit
from stateroom.api.requests import BodyInit, Request
from stateroom.api.responses import Response
from stateroom.api.websockets import LocalEvents
from stateroom.config import load_config
from stateroom.runtime.interface import CallbackSink, Message
from stateroom.runtime.options import RuntimeOptions
from stateroom.storage.backend import StorageBackend
from stateroom.storage.sqlite import SqliteBackend
from stateroom.worker import WorkerRuntime

logger = logging.getLogger("stateroom.testing")

_UPGRADE_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


class UpgradeRefusedError(Exception):
    """The application answered a WebSocket request without a 101."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"the application answered {response.status}, not 101")
        self.response = response


class TestClient:
    """One loaded application (in-memory storage by default) and its event interface."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: str | Path,
        *,
        options: RuntimeOptions | None = None,
        backend: StorageBackend | None = None,
        base_url: str = "http://testserver",
    ) -> None:
        self.app = Path(app)
        self.options = options or RuntimeOptions()
        self._own_backend = backend is None
        self.backend: StorageBackend = backend or SqliteBackend(in_memory=True)
        self.base_url = base_url
        self.sockets: list[TestSocket] = []
        self.worker: WorkerRuntime | None = None
        self.events: LocalEvents | None = None

    async def __aenter__(self) -> TestClient:
        worker = self.worker = WorkerRuntime(load_config(self.app), self.options, self.backend)
        worker.start()
        self.events = LocalEvents(worker)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for socket in self.sockets:
            socket.drop()
        if self.events is not None:
            await self.events.shutdown()
        if self._own_backend:
            self.backend.close()

    def _events(self) -> LocalEvents:
        if self.events is None:
            raise RuntimeError("use the TestClient in `async with`")
        return self.events

    async def fetch(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: HeadersInit = None,
        body: BodyInit = None,
    ) -> Response:
        """What the application answers ``method path`` (a 101 too: see ``websocket``)."""
        request = Request(self.base_url + path, method=method, headers=headers, body=body)
        return await self._events().fetch(request)

    async def websocket(self, path: str, *, headers: dict[str, str] | None = None) -> TestSocket:
        """Open a WebSocket to ``path``: the 101's socket, accepted as the server would."""
        events = self._events()
        response = await self.fetch(path, headers={**_UPGRADE_HEADERS, **(headers or {})})
        if response.status != 101 or response.webSocket is None:
            raise UpgradeRefusedError(response)
        socket = TestSocket(events)
        socket.handle = events.accept_socket(response.webSocket, socket.sink)
        self.sockets.append(socket)
        return socket


class TestSocket:
    """The client's end of one socket: what it sends, and what the runtime sent it."""

    __test__ = False

    def __init__(self, events: LocalEvents) -> None:
        self.events = events
        self.handle: object = None
        self.sink = CallbackSink(self._received, self._closed_by_runtime)
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        # The runtime's close frame: (code or None, reason), once it sent one.
        self.close_frame: tuple[int | None, str] | None = None
        self.closed = asyncio.Event()
        self._client_closed = False
        self._ended = False

    def send(self, message: Message) -> None:
        """A message from the client (delivered now, or queued behind the object's gate)."""
        if self._client_closed or self._ended:
            raise RuntimeError("this socket was closed")
        self.events.socket_message(self.handle, message)

    async def receive(self, timeout: float = 5.0) -> Message:
        """The next message the runtime sent on this socket."""
        return await asyncio.wait_for(self.messages.get(), timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """The client sends a close frame; the socket ends once the runtime answers."""
        if self._client_closed or self._ended:
            return
        self._client_closed = True
        self.events.socket_close(self.handle, code, reason, True)
        if self.close_frame is not None:
            self._end_soon()

    def drop(self) -> None:
        """The connection is lost without a close frame (1006)."""
        if self._ended:
            return
        if not self._client_closed:
            self._client_closed = True
            self.events.socket_close(self.handle, 1006, "", False)
        self._end()

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """The runtime's close frame, once it sent one."""
        await asyncio.wait_for(self.closed.wait(), timeout)
        assert self.close_frame is not None
        return self.close_frame

    # -- the sink: what the runtime sends ---------------------------------------------

    def _received(self, message: Message) -> None:
        if self.close_frame is None:
            self.messages.put_nowait(message)

    def _closed_by_runtime(self, code: int | None, reason: str) -> None:
        if self.close_frame is not None or self._ended:
            return
        self.close_frame = (code, reason)
        self.closed.set()
        if self._client_closed:
            self._end_soon()  # both close frames crossed: the connection ends
        else:
            # A client answers a close frame with the same code, as websockets does.
            asyncio.get_running_loop().call_soon(self._answer_close, code, reason)

    def _answer_close(self, code: int | None, reason: str) -> None:
        if not self._client_closed and not self._ended:
            self._client_closed = True
            self.events.socket_close(self.handle, 1005 if code is None else code, reason, True)
            self._end_soon()

    def _end_soon(self) -> None:
        asyncio.get_running_loop().call_soon(self._end)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.events.socket_end(self.handle)
