"""WebSockets as user code sees them: ``WebSocketPair``, ``WebSocket`` and its events.

A pair is two connected ends. The Worker returns ``client`` in a 101 response;
the runtime binds it to the network connection, so ``server.send()`` writes
frames straight to the socket and frames from the socket are delivered as
events on ``server``. When neither end is bound to a network connection the
two ends talk to each other in process.

Inbound events go through the owning object's actor host, which keeps them in
order with the object's other events (requests, RPC, alarms) and holds them
while the object's input gate is closed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, cast

from stateroom.protocol.frames import (
    CLOSE_ABNORMAL,
    CLOSE_NO_STATUS,
    CLOSED,
    CLOSING,
    CONNECTING,
    MAX_CLOSE_REASON,
    OPEN,
    valid_wire_close_code,
)
from stateroom.runtime.context import current_host

# Handlers are async def: knowing their result by type spares a hasattr() per message.
from stateroom.runtime.eager import COROUTINE
from stateroom.runtime.hibernation import (
    HibernatableSocket,
    SocketHooks,
    deserialize_attachment,
    serialize_attachment,
)
from stateroom.runtime.interface import Events, SocketSink
from stateroom.runtime.interface import Message as Message
from stateroom.runtime.interface import SocketSink as WebSocketSink
from stateroom.runtime.trace import log_uncaught

if TYPE_CHECKING:
    from stateroom.api.requests import Request
    from stateroom.api.responses import Response
    from stateroom.runtime.actor import ActorHost

logger = logging.getLogger("stateroom.websocket")

# "No status received" (1005): what a close event reports when the peer's close frame
# had no code. Passing it back to close() answers with an empty close frame.
NO_STATUS: Final = CLOSE_NO_STATUS
ABNORMAL: Final = CLOSE_ABNORMAL


class MessageEvent:
    __slots__ = ("data",)
    type = "message"

    def __init__(self, data: Message) -> None:
        self.data = data


class CloseEvent:
    __slots__ = ("code", "reason", "wasClean")
    type = "close"

    def __init__(self, code: int, reason: str, was_clean: bool) -> None:
        self.code = code
        self.reason = reason
        self.wasClean = was_clean

    @property
    def was_clean(self) -> bool:
        return self.wasClean


class ErrorEvent:
    __slots__ = ("error", "message")
    type = "error"

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.message = str(error)


Listener = Callable[[Any], Any]


class WebSocket:
    """One end of a WebSocket, with the Fetch-style event API."""

    CONNECTING: ClassVar[int] = CONNECTING
    OPEN: ClassVar[int] = OPEN
    CLOSING: ClassVar[int] = CLOSING
    CLOSED: ClassVar[int] = CLOSED

    __slots__ = (
        "_accepted",
        "_backlog",
        "_close_sent",
        "_ended",
        "_hib",
        "_host",
        "_listeners",
        "_peer",
        "_sink",
        "extensions",
        "protocol",
        "readyState",
        "url",
    )

    def __init__(self) -> None:
        self.readyState: int = CONNECTING
        # As on Cloudflare: None until a handshake has set them. A server end gets the
        # 101's subprotocol and extensions; ``url`` is set on outgoing (client) sockets.
        self.url: str | None = None
        self.protocol: str | None = None
        self.extensions: str | None = None
        self._peer: WebSocket | None = None
        self._sink: WebSocketSink | None = None
        self._listeners: dict[str, list[Listener]] = {}
        self._accepted = False
        self._close_sent = False
        self._ended = False
        self._host: ActorHost | None = current_host.get(None)
        # Events that arrived before accept(); delivered in order on accept.
        self._backlog: list[tuple[str, tuple[Any, ...]]] | None = None
        # Hibernation API state (set by ctx.acceptWebSocket); None in listener mode.
        # What the runtime keeps for the hibernation API (ctx.acceptWebSocket(), and
        # attachments): owned by the object's HibernationManager; None in listener mode.
        self._hib: HibernatableSocket | None = None

    @property
    def ready_state(self) -> int:
        return self.readyState

    # -- user API ---------------------------------------------------------

    def accept(self) -> None:
        """Start delivering events to this end's listeners (the non-hibernating API)."""
        if self._accepted:
            raise RuntimeError("WebSocket has already been accepted.")
        if self._hibernatable():
            raise RuntimeError("WebSocket was accepted with ctx.acceptWebSocket().")
        self._mark_accepted()

    def _mark_accepted(self) -> None:
        self._accepted = True
        if self._host is None:
            self._host = current_host.get(None)
        if self.readyState == CONNECTING:
            self.readyState = OPEN
        if self._host is not None and not self._hibernatable():
            self._host.socket_opened(self)
        backlog, self._backlog = self._backlog, None
        for kind, args in backlog or ():
            self._deliver(kind, args)

    def addEventListener(self, type: str, listener: Listener) -> None:
        self._listeners.setdefault(type, []).append(listener)

    def add_event_listener(self, type: str, listener: Listener) -> None:
        self.addEventListener(type, listener)

    def removeEventListener(self, type: str, listener: Listener) -> None:
        listeners = self._listeners.get(type)
        if listeners and listener in listeners:
            listeners.remove(listener)

    def remove_event_listener(self, type: str, listener: Listener) -> None:
        self.removeEventListener(type, listener)

    def send(self, message: Message | bytearray | memoryview) -> None:
        if not self._accepted:
            raise RuntimeError("You must call accept() on this WebSocket before sending messages.")
        if self._close_sent:
            raise RuntimeError("Can't call WebSocket send() after close().")
        sink = self._sink
        if sink is None:
            sink = self._sink = self._peer_sink()
        if type(message) is not str and type(message) is not bytes:
            message = bytes(message)  # type: ignore[arg-type]  # bytearray / memoryview
        host = self._host
        if host is not None and host.output_gate is not None and host.output_gate.pending:
            # Output gate: this message leaves once the object's earlier writes are durable.
            host.output_gate.hold(functools.partial(sink.send_message, message))
            return
        sink.send_message(message)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send a close frame; ``code`` 1005 or None sends one without a status."""
        if self._close_sent:
            return
        if (
            code is not None
            and code not in (NO_STATUS, ABNORMAL)
            and not valid_wire_close_code(code)
        ):
            raise ValueError(f"Invalid WebSocket close code: {code}.")
        if reason and len(reason.encode("utf-8")) > MAX_CLOSE_REASON:
            raise ValueError(
                f"WebSocket close reason must be at most {MAX_CLOSE_REASON} bytes of UTF-8."
            )
        self._close_sent = True
        if self.readyState < CLOSING:
            self.readyState = CLOSING
        sink = self._sink
        if sink is None:
            sink = self._sink = self._peer_sink()
        wire_code = None if code in (None, NO_STATUS, ABNORMAL) else code
        host = self._host
        if host is not None and host.output_gate is not None and host.output_gate.pending:
            host.output_gate.hold(functools.partial(sink.close, wire_code, reason or ""))
            return
        sink.close(wire_code, reason or "")

    # -- hibernation API (attachments outlive the object, with the socket) --

    def serializeAttachment(self, value: Any) -> None:
        data = serialize_attachment(value)
        record = self._hib
        if record is None:
            record = self._hib = HibernatableSocket(self, None, ())
        record.attachment = data

    def serialize_attachment(self, value: Any) -> None:
        self.serializeAttachment(value)

    def deserializeAttachment(self) -> Any:
        record = self._hib
        return deserialize_attachment(None if record is None else record.attachment)

    def deserialize_attachment(self) -> Any:
        return self.deserializeAttachment()

    # -- runtime side ---------------------------------------------------

    def _peer_sink(self) -> WebSocketSink:
        if self._peer is None:
            raise RuntimeError("WebSocket is not connected.")
        return _PeerSink(self._peer)

    def _bind(self, sink: WebSocketSink) -> None:
        """Attach this end's peer to a network connection: the peer now writes to it.

        What the peer sent before (while its object handled the upgrade request, before
        the 101 left) waits in this end's backlog: it leaves first, in order.
        """
        peer = self._peer
        if peer is None:
            raise RuntimeError("WebSocket has no peer to bind.")
        peer._sink = sink
        self.readyState = OPEN
        backlog, self._backlog = self._backlog, None
        for kind, args in backlog or ():
            if kind == "message":
                sink.send_message(args[0])
            elif kind == "close":
                code, reason = args[0], args[1]
                sink.close(None if code == NO_STATUS else code, reason)

    def _receive_message(self, message: Message) -> None:
        """A message arrived: the hot path of ``_receive("message", ...)``.

        A socket accepted with ``acceptWebSocket()`` is its object's hibernation
        manager's to deliver. Listeners of an accepted socket whose object takes events
        right now are called directly; everything else (backlog before accept, a closed
        input gate) takes the general path.
        """
        record = self._hib
        if record is not None:
            manager = record.manager
            if manager is not None:
                manager.message(record, message)
                return
        host = self._host
        if host is None or not self._accepted or host.gate.blocked:
            self._receive("message", message)
            return
        listeners = self._listeners.get("message")
        if not listeners:
            return
        event = MessageEvent(message)
        if len(listeners) == 1:  # indexed: a typed list, not generic iteration
            _call_listener(host, listeners[0], event)
        else:
            for listener in tuple(listeners):  # a listener may add or remove listeners
                _call_listener(host, listener, event)

    def _receive(self, kind: str, *args: Any) -> None:
        """An event arrived for this end (from the network or the peer)."""
        if not self._accepted:
            if self._backlog is None:
                self._backlog = []
            self._backlog.append((kind, args))
            return
        self._deliver(kind, args)

    def _deliver(self, kind: str, args: tuple[Any, ...]) -> None:
        record = self._hib
        if record is not None and record.manager is not None:
            record.manager.deliver(record, kind, args)  # the hibernation API's
            return
        host = self._host
        if host is None:  # a pair used outside any object (in a Worker)
            pending = self._dispatch(kind, args)
            if pending is not None:
                task = asyncio.get_running_loop().create_task(pending)
                _DETACHED.add(task)
                task.add_done_callback(_DETACHED.discard)
        else:
            host.deliver_socket_event(self, kind, args)

    def _dispatch(self, kind: str, args: tuple[Any, ...]) -> Any:
        """Run the listeners for one event; returns a coroutine if one needs awaiting."""
        if kind == "close":
            code, reason, was_clean = args
            self._closing_received()
            event: Any = CloseEvent(code, reason, was_clean)
        elif kind == "message":
            event = MessageEvent(args[0])
        else:
            event = ErrorEvent(args[0])
        listeners = self._listeners.get(kind)
        pending = None
        if listeners:
            for listener in tuple(listeners):
                result = listener(event)
                if _awaitable(result):
                    pending = _chain(pending, result)
        if kind == "close":
            if pending is None:
                self._auto_close(event.code)
            else:
                pending = _then_auto_close(pending, self, event.code)
        return pending

    def _closing_received(self) -> None:
        self.readyState = CLOSED if self._close_sent else CLOSING

    def _auto_close(self, code: int) -> None:
        """The handler did not answer the peer's close: answer with the peer's code."""
        if not self._close_sent:
            self.close(code if code != ABNORMAL else None, "")

    def _finished(self) -> None:
        """The connection is gone: nothing more will be sent or received."""
        self.readyState = CLOSED
        self._close_sent = True
        if not self._ended:
            self._ended = True
            record = self._hib
            if record is not None and record.manager is not None:
                record.manager.closed(record)
            elif self._accepted and self._host is not None:
                self._host.socket_closed(self)

    def _hibernatable(self) -> bool:
        record = self._hib
        return record is not None and record.manager is not None


# Tasks of async listeners on pairs that belong to no object: kept alive until done.
_DETACHED: set[asyncio.Task[Any]] = set()


async def _then_auto_close(pending: Any, ws: WebSocket, code: int) -> None:
    """An async close listener: answer the peer's close once it has finished."""
    try:
        await pending
    finally:
        ws._auto_close(code)


def _call_listener(host: ActorHost, listener: Listener, event: MessageEvent) -> None:
    try:
        result = listener(event)
    except Exception:
        log_uncaught(logger, host, "a WebSocket message handler")
        return
    if _awaitable(result):
        host.start(result)


def _awaitable(result: object) -> bool:
    """Did a handler return something to await? Its type settles the common case."""
    return result is not None and (type(result) is COROUTINE or hasattr(result, "__await__"))


async def _chain(first: Any, second: Any) -> None:
    if first is not None:
        await first
    await second


class _PeerSink(WebSocketSink):
    """In-process delivery to the other end of a pair."""

    __slots__ = ("_peer",)

    def __init__(self, peer: WebSocket) -> None:
        self._peer = peer

    def send_message(self, message: Message) -> None:
        bound = self._bound()
        if bound is not None:
            bound.send_message(message)
        else:
            self._peer._receive("message", message)

    def close(self, code: int | None, reason: str) -> None:
        bound = self._bound()
        if bound is not None:
            bound.close(code, reason)
        else:
            self._peer._receive("close", code if code is not None else NO_STATUS, reason, True)

    def _bound(self) -> WebSocketSink | None:
        """The network connection the receiving end was bound to since this sink was made.

        A send the output gate held back before the 101 is released through this sink
        perhaps after the binding: it goes to the connection then, not to a backlog
        no one reads any more.
        """
        sender = self._peer._peer
        sink = sender._sink if sender is not None else None
        return (
            sink if sink is not None and sink is not self and type(sink) is not _PeerSink else None
        )


class WebSocketRequestResponsePair:
    """An auto-response: a message equal to ``request`` is answered with ``response``
    by the runtime, without waking the object (``ctx.setWebSocketAutoResponse``)."""

    __slots__ = ("request", "response")

    def __init__(self, request: str, response: str) -> None:
        if not isinstance(request, str) or not isinstance(response, str):
            raise TypeError("WebSocketRequestResponsePair takes two strings")
        if len(request) > 2048 or len(response) > 2048:
            raise ValueError("auto-response request and response are limited to 2048 characters")
        self.request = request
        self.response = response


class WebSocketPair:
    """Two connected ends: ``client, server = WebSocketPair()``."""

    __slots__ = ("client", "server")

    def __init__(self) -> None:
        self.client = WebSocket()
        self.server = WebSocket()
        self.client._peer = self.server
        self.server._peer = self.client

    def __iter__(self) -> Iterator[WebSocket]:
        return iter((self.client, self.server))

    def __getitem__(self, index: int) -> WebSocket:
        return (self.client, self.server)[index]

    def __len__(self) -> int:
        return 2

    def object_values(self) -> tuple[WebSocket, WebSocket]:
        """Cloudflare's Python SDK spelling of ``Object.values(pair)``."""
        return self.client, self.server


# -- the event interface, in process ----------------------------------------------------


class Worker(Protocol):
    """What ``LocalEvents`` needs of a loaded application (``stateroom.worker``)."""

    async def fetch(self, request: Request) -> Response: ...

    async def shutdown(self) -> None: ...


class LocalEvents(Events):
    """The event interface in process: a socket's handle is its object's ``WebSocket`` end.

    A message is a direct call into that end's delivery, run in the context of its
    object (``current_host`` set; the context is made once per object). ``worker`` is
    the loaded application; ``stateroom dev`` replaces it on a reload.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def fetch(self, request: Request) -> Response:
        return await self.worker.fetch(request)

    async def shutdown(self) -> None:
        await self.worker.shutdown()

    def accept_socket(
        self, upgrade: object, sink: SocketSink, protocol: str = "", extensions: str = ""
    ) -> object:
        client = _client_end(upgrade)
        server = client._peer
        if server is not None:
            server.protocol = client.protocol = protocol
            server.extensions = client.extensions = extensions
        client._bind(sink)  # sends what the object sent before the 101, then binds
        return server

    def refuse_socket(self, upgrade: object) -> None:
        peer = _client_end(upgrade)._peer
        if peer is not None:
            peer._receive("close", ABNORMAL, "", False)
            peer._finished()

    def socket_message(self, handle: object, message: Message) -> None:
        ws = cast(WebSocket, handle)
        host = ws._host
        if host is None:  # a pair used outside any object
            ws._receive_message(message)
            return
        context = host.socket_context
        if context is None:
            context = _host_context(host)
        context.run(_DELIVER_TEXT, ws, message)

    def socket_close(self, handle: object, code: int, reason: str, was_clean: bool) -> None:
        cast(WebSocket, handle)._receive("close", code, reason, was_clean)

    def socket_error(self, handle: object, error: BaseException) -> None:
        cast(WebSocket, handle)._receive("error", error)

    def socket_end(self, handle: object) -> None:
        cast(WebSocket, handle)._finished()

    def socket_hibernatable(self, handle: object) -> bool:
        return cast(WebSocket, handle)._hibernatable()


# Held in a C static: a bound method per message would be an allocation per message.
_DELIVER_TEXT: Final = WebSocket._receive_message


def _client_end(upgrade: object) -> WebSocket:
    if not isinstance(upgrade, WebSocket) or upgrade._peer is None:
        raise TypeError("a 101 response's webSocket must be the client end of a WebSocketPair")
    return upgrade


def _host_context(host: ActorHost) -> contextvars.Context:
    """The context a host's socket events run in: the server's, with ``current_host`` set."""
    context = contextvars.copy_context()
    context.run(current_host.set, host)
    host.socket_context = context
    return context


class _SocketHooks(SocketHooks):
    """What the runtime has done to ``WebSocket`` ends (it does not touch their insides)."""

    def dispatch(self, ws: WebSocket, kind: str, args: tuple[Any, ...]) -> Any:
        return ws._dispatch(kind, args)

    def closing_received(self, ws: WebSocket) -> None:
        ws._closing_received()

    def auto_close(self, ws: WebSocket, code: int) -> None:
        ws._auto_close(code)

    def send_now(self, ws: WebSocket, message: str) -> None:
        if not ws._close_sent and ws._sink is not None:
            ws._sink.send_message(message)

    def moved(self, ws: WebSocket, host: ActorHost) -> None:
        ws._host = host


SOCKET_HOOKS: Final = _SocketHooks()
