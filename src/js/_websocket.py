"""``js.WebSocket``: an outgoing WebSocket from a Worker or Durable Object.

``WebSocket.new(url)`` connects to ``url`` (ws:// or wss://) with the ``websockets``
client and gives the Worker a socket with the browser API: ``addEventListener`` for
``open``, ``message``, ``close`` and ``error``, ``send``, ``close``, ``readyState``.

Inside a Durable Object the socket belongs to the object, as on Cloudflare: it is one
end of a ``stateroom.WebSocketPair`` accepted in the object, so its ``message`` and
``close`` events reach the listeners through the object's event queue (in order with
its requests and RPC calls, held while its input gate is closed), an open socket keeps
the object in memory, and resetting the object (``ctx.abort()``) closes it. The other
end of the pair is bridged to the network connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import stateroom
from pyodide.ffi import JsException, JsProxy

logger = logging.getLogger("stateroom.js.websocket")

CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3
ABNORMAL = 1006


class Event:
    """An ``open`` or ``error`` event (``message`` and ``close`` are stateroom's)."""

    __slots__ = ("error", "message", "type")

    def __init__(self, type: str, error: BaseException | None = None) -> None:
        self.type = type
        self.error = error
        self.message = "" if error is None else str(error)

    def __repr__(self) -> str:
        return f"Event({self.type!r}{', ' + repr(self.message) if self.message else ''})"


class WebSocket(JsProxy):
    """A client WebSocket: ``ws = WebSocket.new("wss://...")``."""

    CONNECTING = CONNECTING
    OPEN = OPEN
    CLOSING = CLOSING
    CLOSED = CLOSED

    def __init__(self, url: str, protocols: str | list[str] | None = None) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise JsException("SyntaxError", f"Failed to construct 'WebSocket': bad URL {url!r}")
        self.url = url
        self.protocol = ""
        self.extensions = ""
        self._state = CONNECTING
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {"open": [], "error": []}
        # ``_local`` is the end the Worker sees events on; ``_remote`` mirrors the network.
        self._remote, self._local = stateroom.WebSocketPair().object_values()
        self._local.accept()
        self._remote.accept()
        self._local.addEventListener("close", self._closed)
        self._remote.addEventListener("message", self._outgoing)
        self._remote.addEventListener("close", self._close_requested)
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._close_args: tuple[int, str] = (1000, "")
        self._wrapped: dict[Callable[[Any], Any], Callable[[Any], Any]] = {}
        subprotocols = [protocols] if isinstance(protocols, str) else protocols
        self._task = asyncio.get_running_loop().create_task(self._run(subprotocols))

    @classmethod
    def new(cls, url: str, protocols: str | list[str] | None = None) -> WebSocket:
        return cls(str(url), protocols)

    @property
    def readyState(self) -> int:
        return self._state

    ready_state = readyState

    # -- the browser API -----------------------------------------------------------------

    def addEventListener(self, type: str, listener: Callable[[Any], Any]) -> None:
        if type in self._listeners:
            self._listeners[type].append(listener)
        else:
            wrapped = self._wrapped.setdefault(listener, _ending_abort(listener))
            self._local.addEventListener(type, wrapped)

    add_event_listener = addEventListener

    def removeEventListener(self, type: str, listener: Callable[[Any], Any]) -> None:
        if type in self._listeners:
            if listener in self._listeners[type]:
                self._listeners[type].remove(listener)
        elif listener in self._wrapped:
            self._local.removeEventListener(type, self._wrapped[listener])

    remove_event_listener = removeEventListener

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        if self._state == CONNECTING:
            raise JsException("InvalidStateError", "Failed to execute 'send': still CONNECTING")
        if self._state == OPEN:
            self._local.send(message)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self._state >= CLOSING:
            return
        if self._state == CONNECTING:
            self._task.cancel()
        self._state = CLOSING
        self._local.close(code, reason)

    # -- the bridge ----------------------------------------------------------------------

    def _emit(self, type: str, event: Event) -> None:
        for listener in list(self._listeners[type]):
            try:
                result = _ending_abort(listener)(event)
                if asyncio.iscoroutine(result):
                    task = asyncio.get_running_loop().create_task(result)
                    _PENDING.add(task)
                    task.add_done_callback(_done)
            except Exception:
                logger.exception("Uncaught exception in a WebSocket %s listener", type)

    def _outgoing(self, event: Any) -> None:
        self._outbox.put_nowait(event.data)

    def _close_requested(self, event: Any) -> None:
        """The Worker closed its end: close the network connection with its code."""
        self._close_args = (event.code, event.reason)
        self._outbox.put_nowait(None)

    def _closed(self, event: Any) -> None:
        self._state = CLOSED

    async def _run(self, subprotocols: list[str] | None) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        try:
            connection = await connect(
                self.url,
                subprotocols=subprotocols,  # type: ignore[arg-type]
                compression="deflate",
            )
        except asyncio.CancelledError:
            self._state = CLOSED
            raise
        except Exception as exc:
            logger.info("WebSocket to %s failed: %s", self.url, exc)
            self._state = CLOSED
            self._emit("error", Event("error", exc))
            self._remote.close(None, "")
            return
        self.protocol = connection.subprotocol or ""
        response = connection.response
        if response is not None:
            self.extensions = response.headers.get("Sec-WebSocket-Extensions", "")
        if self._state == CONNECTING:
            self._state = OPEN
        self._emit("open", Event("open"))
        sender = asyncio.get_running_loop().create_task(self._send_all(connection))
        try:
            async for message in connection:
                if self._remote.readyState == OPEN:
                    self._remote.send(message)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
        code = connection.close_code
        if self._remote.readyState == OPEN:
            if code is not None and code not in (1005, 1006):
                self._remote.close(code, connection.close_reason or "")
            else:
                self._remote.close(None, "")

    async def _send_all(self, connection: Any) -> None:
        while True:
            message = await self._outbox.get()
            if message is None:
                code, reason = self._close_args
                await connection.close(code if code not in (1005, 1006) else 1000, reason)
                return
            await connection.send(message)


_PENDING: set[asyncio.Task[Any]] = set()


def _ending_abort(listener: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``listener``, for which ``ctx.abort()`` is the normal end of the handler it ran in,
    not an error to report (the object has been reset; that is logged already)."""
    from stateroom.api.state import DurableObjectAbort

    async def finish(result: Any) -> Any:
        try:
            return await result
        except DurableObjectAbort:
            return None

    def call(event: Any) -> Any:
        try:
            result = listener(event)
        except DurableObjectAbort:
            return None
        return finish(result) if asyncio.iscoroutine(result) else result

    return call


def _done(task: asyncio.Task[Any]) -> None:
    _PENDING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("Uncaught exception in a WebSocket listener", exc_info=task.exception())
