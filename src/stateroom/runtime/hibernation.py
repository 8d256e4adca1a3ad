"""WebSocket hibernation: sockets that stay open while their object leaves memory.

A socket accepted with ``ctx.acceptWebSocket()`` belongs to its object's host, not to
the instance. When the object has nothing else going on, the host drops the instance
(hibernates) but keeps the sockets; the next message, close or error constructs the
object again and calls its ``webSocketMessage`` / ``webSocketClose`` /
``webSocketError`` handler. An auto-response pair is answered without waking it.

One ``HibernationManager`` per object (workerd's ``hibernation-manager.h``) owns all of
it: the sockets, their tags and attachments (a ``HibernatableSocket`` each), the
auto-response, the event timeout, and whether an event is delivered now or queued
behind the object's input gate. What it needs done to a ``WebSocket`` end itself (its
state on a close, a send that bypasses the object) goes through ``SocketHooks``, which
the API layer implements: the runtime does not import it.

Compiled with mypyc: every message on a hibernatable socket passes ``message()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from stateroom.runtime.context import current_host
from stateroom.runtime.eager import COROUTINE
from stateroom.runtime.trace import log_uncaught

if TYPE_CHECKING:
    from stateroom.api.websockets import WebSocket
    from stateroom.runtime.actor import ActorHost

logger = logging.getLogger("stateroom.hibernation")

# Cloudflare's limits.
MAX_ATTACHMENT_SIZE: Final = 16 * 1024
MAX_TAGS: Final = 10
MAX_TAG_LENGTH: Final = 256
MAX_SOCKETS_PER_OBJECT: Final = 32768

_HANDLERS: Final = {
    "message": ("webSocketMessage", "web_socket_message"),
    "close": ("webSocketClose", "web_socket_close"),
    "error": ("webSocketError", "web_socket_error"),
}


class SocketHooks:
    """What the runtime needs done to a ``WebSocket`` end, implemented by the API layer.

    workerd's hooks pattern: the runtime calls down through these instead of reaching
    into the API's objects (``stateroom.api.websockets.SOCKET_HOOKS``).
    """

    def dispatch(
        self, ws: WebSocket, kind: str, args: tuple[Any, ...]
    ) -> Coroutine[Any, Any, Any] | None:
        """Run the listeners of an end accepted with ``accept()`` for one event."""
        raise NotImplementedError

    def closing_received(self, ws: WebSocket) -> None:
        """The peer's close arrived: the end's ``readyState`` moves on."""
        raise NotImplementedError

    def auto_close(self, ws: WebSocket, code: int) -> None:
        """The handler did not answer the peer's close: answer with the peer's code."""
        raise NotImplementedError

    def send_now(self, ws: WebSocket, message: str) -> None:
        """Send on the end at once, past the object (an auto-response)."""
        raise NotImplementedError

    def moved(self, ws: WebSocket, host: ActorHost) -> None:
        """The end's object is now ``host`` (a reload adopted the socket)."""
        raise NotImplementedError


class HibernatableSocket:
    """What the runtime keeps of one socket: its tags, attachment and auto-response time.

    ``manager`` is the manager of the socket's object (it changes when a reload adopts
    the socket); None for a socket not accepted with ``acceptWebSocket()`` that only
    holds an attachment.
    """

    __slots__ = ("attachment", "auto_response_timestamp", "manager", "socket", "tags")

    def __init__(
        self, socket: WebSocket, manager: HibernationManager | None, tags: tuple[str, ...]
    ) -> None:
        self.socket = socket
        self.manager = manager
        self.tags = tags
        self.attachment: bytes | None = None
        self.auto_response_timestamp: float | None = None


def serialize_attachment(value: Any) -> bytes | None:
    if value is None:
        return None
    from stateroom.storage.encoding import encode  # storage loads only if attachments are used

    data = encode(value)
    if len(data) > MAX_ATTACHMENT_SIZE:
        raise ValueError(
            f"serializeAttachment(): the serialized value is {len(data)} bytes; "
            f"the limit is {MAX_ATTACHMENT_SIZE} bytes. Store large state in ctx.storage "
            "and keep only a key in the attachment."
        )
    return data


def deserialize_attachment(data: bytes | None) -> Any:
    if data is None:
        return None
    from stateroom.storage.encoding import decode

    return decode(data)


def check_tags(tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise TypeError("acceptWebSocket(): tags must be a list of strings")
    result = tuple(tags)
    if len(result) > MAX_TAGS:
        raise ValueError(f"acceptWebSocket(): at most {MAX_TAGS} tags per WebSocket")
    for tag in result:
        if not tag:
            raise ValueError("acceptWebSocket(): a tag must not be empty")
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(
                f"acceptWebSocket(): a tag must be at most {MAX_TAG_LENGTH} characters"
            )
    return result


class HibernationManager:
    """The hibernatable sockets of one object, and how their events reach it."""

    def __init__(self, host: ActorHost, hooks: SocketHooks) -> None:
        self.host = host
        self.hooks = hooks
        self.sockets: dict[WebSocket, HibernatableSocket] = {}
        self.auto_response: tuple[str, str] | None = None
        self.event_timeout_ms: int | None = None
        # A class seen with no webSocketMessage() to call: its messages skip the fast path.
        self.no_message_handler: type | None = None

    # -- sockets -------------------------------------------------------------------------

    def accept(self, ws: WebSocket, tags: Any) -> HibernatableSocket:
        """``ctx.acceptWebSocket(ws, tags)``: the socket is the object's from now on."""
        if len(self.sockets) >= MAX_SOCKETS_PER_OBJECT:
            raise RuntimeError(
                f"acceptWebSocket(): an object may hold at most "
                f"{MAX_SOCKETS_PER_OBJECT} hibernatable WebSockets"
            )
        record = HibernatableSocket(ws, self, check_tags(tags))
        self.sockets[ws] = record
        return record

    def closed(self, record: HibernatableSocket) -> None:
        """The socket's connection is gone."""
        self.sockets.pop(record.socket, None)
        self.host.hibernatable_closed()

    def tagged(self, tag: str | None) -> list[WebSocket]:
        if tag is None:
            return list(self.sockets)
        return [ws for ws, record in self.sockets.items() if tag in record.tags]

    def adopt(self, old: HibernationManager) -> int:
        """Take over the sockets of the same object in the version being replaced."""
        self.auto_response = old.auto_response
        self.event_timeout_ms = old.event_timeout_ms
        moved = 0
        for ws, record in list(old.sockets.items()):
            record.manager = self
            self.sockets[ws] = record
            self.hooks.moved(ws, self.host)
            moved += 1
        old.sockets.clear()
        return moved

    # -- events ----------------------------------------------------------------------------

    def message(self, record: HibernatableSocket, message: str | bytes) -> None:
        """A message arrived: straight to ``webSocketMessage()`` of a live, open object.

        Everything else (a closed input gate, an auto-response, an event timeout, an
        object out of memory) takes ``deliver()``.
        """
        host = self.host
        obj: Any = host.instance
        if (
            obj is None
            or host.gate.blocked
            or self.auto_response is not None
            or self.event_timeout_ms is not None
            or type(obj) is self.no_message_handler
        ):
            self.deliver(record, "message", (message,))
            return
        host._last_active = host.clock()  # activity postpones hibernation
        try:
            # A method call, not getattr() then a call: looked up now all the same,
            # but the class's function gets obj as an argument, not a bound method.
            result = obj.webSocketMessage(record.socket, message)
        except Exception:
            if getattr(obj, "webSocketMessage", None) is None:
                # None to call (web_socket_message() perhaps): the general path's case,
                # from now on without the exception.
                self.no_message_handler = type(obj)
                self.deliver(record, "message", (message,))
            else:
                log_uncaught(logger, host, "webSocketMessage()")
            return
        try:
            # Handlers are async def: knowing their result by type spares a hasattr().
            if result is not None and (type(result) is COROUTINE or hasattr(result, "__await__")):
                host.start(result)
        except Exception:
            log_uncaught(logger, host, "webSocketMessage()")

    def deliver(self, record: HibernatableSocket, kind: str, args: tuple[Any, ...]) -> None:
        """An event for a hibernatable socket: answered here, delivered now, or queued."""
        auto = self.auto_response
        if auto is not None and kind == "message" and args[0] == auto[0]:
            # Answered by the runtime: the object is neither woken nor told.
            record.auto_response_timestamp = time.time()
            self.hooks.send_now(record.socket, auto[1])
            return
        gate = self.host.gate
        if gate.blocked:
            gate.enqueue(lambda: self._run(record, kind, args))
            return
        self._run(record, kind, args)

    def _run(self, record: HibernatableSocket, kind: str, args: tuple[Any, ...]) -> None:
        host = self.host
        if host.evicted:
            manager = record.manager
            if manager is not None and manager is not self:
                manager.deliver(record, kind, args)  # adopted by a new version meanwhile
            return
        token = current_host.set(host)
        try:
            if host.instance is None:
                preparing = host.preparing()
                if preparing is not None:
                    # Deliver once the object's data is there, in arrival order (later
                    # events await the same preparation).
                    host.spawn(_after(preparing, lambda: self._run(record, kind, args)))
                    return
                host.activate()
                if host.gate.depth:
                    # The constructor started blockConcurrencyWhile(): wait for it.
                    host.gate.enqueue(lambda: self._run(record, kind, args))
                    return
            pending = self._dispatch(record.socket, kind, args)
            host._last_active = host.clock()  # activity postpones hibernation
            if pending is not None:
                host.start(pending)
        except Exception:
            log_uncaught(logger, host, f"a WebSocket {kind} handler")
        finally:
            current_host.reset(token)

    def _dispatch(
        self, ws: WebSocket, kind: str, args: tuple[Any, ...]
    ) -> Coroutine[Any, Any, Any] | None:
        """Call the object's handler for one event, waking it if needed."""
        obj = self.host.activate()
        hooks = self.hooks
        if kind == "close":
            code, reason, was_clean = args
            hooks.closing_received(ws)
            handler = _handler(obj, kind)
            if handler is None:
                hooks.auto_close(ws, code)
                return None
            return _close_then_reply(handler(ws, code, reason, was_clean), hooks, ws, code)
        handler = _handler(obj, kind)
        if handler is None:
            if kind == "message":
                logger.warning(
                    "%s received a WebSocket message but defines no webSocketMessage() handler",
                    type(obj).__name__,
                )
            return None
        result = handler(ws, *args)
        if not hasattr(result, "__await__"):
            return None
        if self.event_timeout_ms is not None:
            return _bounded(result, self.event_timeout_ms / 1000)
        return result  # type: ignore[no-any-return]


async def _bounded(result: Any, seconds: float) -> None:
    """setHibernatableWebSocketEventTimeout(): a handler running longer is cancelled."""
    try:
        await asyncio.wait_for(result, seconds)
    except TimeoutError:
        logger.error("WebSocket event handler exceeded its %.3fs timeout; cancelled", seconds)


def _handler(obj: object, kind: str) -> Any:
    camel, snake = _HANDLERS[kind]
    return getattr(obj, camel, None) or getattr(obj, snake, None)


async def _close_then_reply(result: Any, hooks: SocketHooks, ws: WebSocket, code: int) -> None:
    if hasattr(result, "__await__"):
        await result
    hooks.auto_close(ws, code)


async def _after(awaitable: Awaitable[None], then: Callable[[], None]) -> None:
    await awaitable
    then()
