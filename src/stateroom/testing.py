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

The helpers below reach inside a loaded application the way Miniflare's
``vitest-pool-workers`` does (``runInDurableObject``, ``runDurableObjectAlarm``,
``listDurableObjectIds``); ``stateroom.pytest_plugin`` gives them to pytest as fixtures,
with a fresh storage per test and a clock a test can advance (``VirtualTimeLoop``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from stateroom.api.entrypoints import DurableObject
from stateroom.api.headers import HeadersInit
from stateroom.api.namespace import DurableObjectId, DurableObjectNamespace, DurableObjectStub
from stateroom.api.requests import BodyInit, Request
from stateroom.api.responses import Response
from stateroom.api.state import DurableObjectState
from stateroom.api.websockets import LocalEvents
from stateroom.config import load_config
from stateroom.runtime.channel import _alarm
from stateroom.runtime.context import current_host
from stateroom.runtime.interface import CallbackSink, Message
from stateroom.runtime.options import RuntimeOptions
from stateroom.storage.backend import StorageBackend
from stateroom.storage.sqlite import SqliteBackend
from stateroom.worker import WorkerRuntime

logger = logging.getLogger("stateroom.testing")

T = TypeVar("T")

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
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeLoop):
            # Cron triggers follow the test's clock: advance() fires those due by then.
            worker.wall_clock = lambda: time.time() + loop.offset
            worker.cron_catch_up = True
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

    @property
    def env(self) -> Any:
        """The application's ``env`` (its bindings: ``client.env.MY_DO.getByName("a")``)."""
        if self.worker is None:
            raise RuntimeError("use the TestClient in `async with`")
        return self.worker.env

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
        protocol = response.headers.get("sec-websocket-protocol") or ""
        socket.handle = events.accept_socket(response.webSocket, socket.sink, protocol)
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


# -- inside the objects (Miniflare's runInDurableObject and friends) ----------------------


async def run_in_durable_object(
    stub: DurableObjectStub,
    fn: Callable[[Any, DurableObjectState], Awaitable[T] | T],
) -> T:
    """Run ``fn(instance, state)`` inside the object ``stub`` reaches, as one of its events.

    The object is constructed if it is not live; ``fn`` runs in its turn behind the input
    gate (after the events before it, before those after it), in the object's context
    (``state.storage`` is its storage), and its result is released once the writes it made
    are durable, as a ``fetch`` would be. ``fn`` may be a plain function or a coroutine
    function; what it returns (or raises) is what this returns (or raises).
    """

    async def event(instance: DurableObject) -> T:
        # The host running the event: not necessarily the one asked first, if that one
        # was reset while the event waited for its turn.
        host = current_host.get()
        state = None if host is None else host.ctx
        assert state is not None  # the instance is live while its event runs
        result = fn(instance, state)
        if inspect.isawaitable(result):
            return await result
        return result

    return await stub._objects.host(stub.id).run(event)


async def run_alarm(stub: DurableObjectStub) -> bool:
    """Run the object's scheduled alarm now, whatever its time; whether one was set.

    As Miniflare's ``runDurableObjectAlarm``: ``alarm()`` runs as the scheduler would run
    it (first try: ``retryCount`` 0), as one event of the object, and the alarm is then
    deleted unless the handler set a new one (whose timer stays armed). If ``alarm()``
    raises, so does this, and the alarm stays set (the scheduler retries it in its time).
    """

    async def event(instance: DurableObject, state: DurableObjectState) -> bool:
        when = await state.storage.getAlarm()
        if when is None:
            return False
        await _alarm(when, 0, instance)
        return True

    return await run_in_durable_object(stub, event)


def list_object_ids(namespace: DurableObjectNamespace) -> list[DurableObjectId]:
    """The ids of the namespace's objects that have stored data (the backend's view).

    Writes are committed before the response of the event that made them leaves the
    object, so after an awaited ``fetch`` or RPC call its writes are counted.
    """
    objects = namespace._objects
    return [
        DurableObjectId(hex_id) for hex_id in objects.backend.stored_objects(objects.storage_name)
    ]


# -- time a test controls ------------------------------------------------------------------


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock a test can move forward with ``advance``.

    The runtime's timers run on the loop's clock: the alarm scheduler's timers, the idle
    eviction and the hibernation timeout (``ActorHost.clock`` is ``loop.time``). Advancing
    the clock makes those due fire at once, without waiting. Wall-clock time
    (``time.time()``, ``Date.now()`` in an object) is not moved.
    """

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, then run until nothing more is ready.

        Timers that fall due fire, and what they start (an alarm's event, a hibernation,
        the tasks those start) runs, as long as it needs only the loop (not I/O nor
        timers still in the future).
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        await self.settle()  # what the test just started is scheduled from the present
        self.offset += seconds
        await self.settle()

    async def settle(self, max_rounds: int = 10_000) -> None:
        """Run the loop until no callback is ready (what is due has run)."""
        for _ in range(max_rounds):
            await asyncio.sleep(0)
            if not self._ready and not self._due():  # type: ignore[attr-defined]
                return
        raise RuntimeError(f"the loop was still busy after {max_rounds} rounds")

    def _due(self) -> bool:
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        now = self.time()
        return any(not handle.cancelled() and handle.when() <= now for handle in scheduled)


def run_with_virtual_time(
    main: Callable[[VirtualTimeLoop], Awaitable[T]], loop: VirtualTimeLoop | None = None
) -> T:
    """Run ``main(loop)`` to completion on ``loop`` (a new ``VirtualTimeLoop`` by default),
    then close the loop."""
    if loop is None:
        loop = VirtualTimeLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(_as_coroutine(functools.partial(main, loop)))
    finally:
        try:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _as_coroutine(main: Callable[[], Awaitable[T]]) -> T:
    return await main()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
