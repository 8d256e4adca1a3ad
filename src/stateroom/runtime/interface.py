"""The event interface between the network and the runtime (workerd's ``WorkerInterface``).

The network server holds clients' sockets and speaks HTTP and WebSocket; everything
an application does happens behind this interface. Across it go a request and its
response, and for an upgraded connection a socket *handle*: an opaque token the
server passes back with each event on that socket and never looks inside. The
runtime answers through the socket's ``SocketSink`` (sends and closes), which the
server gives it when it accepts the upgrade. Live objects (``WebSocket`` ends,
objects' contexts) never cross.

The in-process implementation (``stateroom.api.websockets.LocalEvents``) keeps the
direct, compiled calls of the hot path: the handle is the object's end of the
socket. A front/shard split is a second implementation of the same ``Events``, whose
handles name sockets in another process. The in-process test client
(``stateroom.testing``) drives an application through this interface without
sockets.

Compiled with mypyc: a message crosses it as a direct call on a native class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stateroom.api.requests import Request
    from stateroom.api.responses import Response

Message = str | bytes


class SocketSink:
    """Where the runtime sends one socket's frames: the connection that holds it.

    A base class rather than a Protocol: compiled, a send through it is a direct call,
    where a Protocol-typed one is a method lookup by name and an argument parse.
    """

    __slots__ = ()

    def send_message(self, message: Message) -> None:
        raise NotImplementedError

    def close(self, code: int | None, reason: str) -> None:
        """Send a close frame (``code`` None: one without a status)."""
        raise NotImplementedError


class CallbackSink(SocketSink):
    """A sink that hands what the runtime sends to two functions (the in-process test
    client's; a remote front's would forward them over its connection to the shard)."""

    __slots__ = ("on_close", "on_message")

    def __init__(
        self,
        on_message: Callable[[Message], None],
        on_close: Callable[[int | None, str], None],
    ) -> None:
        self.on_message = on_message
        self.on_close = on_close

    def send_message(self, message: Message) -> None:
        self.on_message(message)

    def close(self, code: int | None, reason: str) -> None:
        self.on_close(code, reason)


class Events:
    """What the network asks of the runtime: requests, and the events of its sockets.

    ``fetch`` answers a request. A response whose ``webSocket`` is set accepts an
    upgrade: that value is opaque to the server, which writes the 101 and then calls
    ``accept_socket(upgrade, sink)`` for the handle of the socket (or
    ``refuse_socket(upgrade)`` when the handshake failed after all). Everything the
    application sent on the socket before that leaves through ``sink`` first.
    """

    async def fetch(self, request: Request) -> Response:
        raise NotImplementedError

    def accept_socket(
        self, upgrade: object, sink: SocketSink, protocol: str = "", extensions: str = ""
    ) -> object:
        """The 101 has been written: bind the socket to ``sink``; returns its handle.

        ``protocol`` and ``extensions`` are the subprotocol and extensions the 101 agreed
        ("" for none): what the socket's ``protocol`` and ``extensions`` then read."""
        raise NotImplementedError

    def refuse_socket(self, upgrade: object) -> None:
        """The upgrade the application accepted failed the handshake: the socket is gone."""
        raise NotImplementedError

    def socket_message(self, handle: object, message: Message) -> None:
        raise NotImplementedError

    def socket_close(self, handle: object, code: int, reason: str, was_clean: bool) -> None:
        """The client closed (or the connection was lost: 1006, not clean)."""
        raise NotImplementedError

    def socket_error(self, handle: object, error: BaseException) -> None:
        raise NotImplementedError

    def socket_end(self, handle: object) -> None:
        """The connection is gone: nothing more is sent or received on the socket."""
        raise NotImplementedError

    def socket_hibernatable(self, handle: object) -> bool:
        """Whether the socket outlives a code reload (accepted with ``acceptWebSocket``)."""
        raise NotImplementedError

    async def shutdown(self) -> None:
        raise NotImplementedError
