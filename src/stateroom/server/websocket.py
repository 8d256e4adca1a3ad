"""WebSocket connections: the asyncio shell around the sans-I/O protocol core.

Holds one upgraded client connection and the runtime's handle for its socket
(``stateroom.runtime.interface``): frames from the client become ``socket_message``
/ ``socket_close`` / ``socket_error`` events on that handle, and the runtime's sends
and closes come back through this connection, its ``SocketSink``. Writes made while
handling one read leave in a single ``transport.write`` (or one ``writelines``);
the usual one (an echo) is held as is, without a list around it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from stateroom.protocol.connection import ServerConnection
from stateroom.protocol.deflate import ExtensionHeaderError, negotiate
from stateroom.protocol.frames import CLOSE_ABNORMAL, CLOSE_GOING_AWAY, SMALL_TEXT_HEADERS
from stateroom.protocol.handshake import accept_key
from stateroom.runtime.interface import Events, Message, SocketSink

if TYPE_CHECKING:
    from stateroom.api.requests import Request
    from stateroom.api.responses import Response
    from stateroom.server.server import Server

logger = logging.getLogger("stateroom.server")

# Headers of a 101 that the runtime writes itself, whatever the app's response says.
_HANDSHAKE_HEADERS: Final = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "content-length",
        "transfer-encoding",
        "keep-alive",
    }
)


class WebSocketConnection(SocketSink):
    """One upgraded client connection, and the runtime's handle for its socket.

    An asyncio protocol by its methods (uvloop and asyncio take any object that has
    them); its base class is the sink the runtime sends this socket's frames through.
    """

    __slots__ = (
        "_batch",
        "_batching",
        "_close_delivered",
        "_close_timer",
        "_ended",
        "_held",
        "_paused",
        "_slow_timer",
        "_upgrade",
        "events",
        "handle",
        "loop",
        "messages_in",
        "messages_out",
        "protocol",
        "server",
        "transport",
    )

    def __init__(self, server: Server, transport: asyncio.Transport, upgrade: object) -> None:
        self.server = server
        self.loop = server.loop
        self.transport = transport
        self.events: Events = server.events
        # What the runtime's response carried, until accept_socket() turns it into a handle.
        self._upgrade: object = upgrade
        self.handle: object = None
        self.protocol = ServerConnection(
            self._queue, self, max_message_size=server.options.max_message_size
        )
        # While a read is handled: its first write waits in _held, any more in _batch.
        self._batching = False
        self._held: bytes | None = None
        self._batch: list[bytes] | None = None
        self._close_delivered = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._ended = False
        self._paused = False
        self._slow_timer: asyncio.TimerHandle | None = None
        # Plain counts, read when metrics are scraped (and added to the server's on close).
        self.messages_in = 0
        self.messages_out = 0

    def start(
        self, request: Request, response: Response, version: str, also_close: bool, tail: bytes
    ) -> None:
        headers = [
            f"HTTP/{version} 101 Switching Protocols",
            "Connection: Upgrade, close" if also_close else "Connection: Upgrade",
            "Upgrade: websocket",
            f"Sec-WebSocket-Accept: {accept_key(request.headers.get('sec-websocket-key') or '')}",
        ]
        extensions = ""
        offers = request.headers.getAll("sec-websocket-extensions")
        if offers:
            try:
                deflate, agreed = negotiate(", ".join(offers), options=self.server.deflate_options)
            except ExtensionHeaderError as exc:
                # A malformed offer only costs the client compression, not the connection.
                logger.debug("ignoring Sec-WebSocket-Extensions: %s", exc)
            else:
                self.protocol.deflate = deflate
                if agreed is not None:
                    headers.append(f"Sec-WebSocket-Extensions: {agreed}")
                    extensions = agreed
        # The app's own headers go out on the 101 too (a chosen Sec-WebSocket-Protocol, a
        # Set-Cookie), as on Cloudflare; the handshake's are the runtime's to write.
        for name, value in response.headers.items():
            if name.lower() not in _HANDSHAKE_HEADERS:
                headers.append(f"{name}: {value}")
        self.transport.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
        self.transport.set_protocol(self)  # type: ignore[arg-type]  # a protocol by its methods
        self.server.connection_opened(self)
        # From now on the runtime sends through this connection; what it sent before
        # (while the app handled the request) leaves first, right after the 101.
        protocol = response.headers.get("sec-websocket-protocol") or ""
        self.handle = self.events.accept_socket(self._upgrade, self, protocol, extensions)
        self._upgrade = None
        if tail:
            self.data_received(tail)
        self.transport.resume_reading()

    # -- asyncio.Protocol ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        # The most common read (one small text frame) yields its text at once.
        text = protocol.small_text(data)
        if text is not None:
            self.messages_in += 1
            # The runtime's sends while it handles the message leave in one go.
            self._batching = True
            try:
                self.events.socket_message(self.handle, text)
            finally:
                self._batching = False
                self._flush()
            return
        self._batching = True
        try:
            protocol.receive_data(data)
        finally:
            self._batching = False
            self._flush()

    def _flush(self) -> None:
        """Send the writes held back while a read was handled."""
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held)
        elif self._batch is not None:
            batch = self._batch
            self._batch = None
            # One writev, without joining: large payloads are queued apart from their header.
            self.transport.writelines(batch)

    def _queue(self, data: bytes) -> None:
        """Send ``data`` now, or with the other writes of the read being handled."""
        if not self._batching:
            self.transport.write(data)
        elif self._batch is not None:
            self._batch.append(data)
        elif self._held is None:
            self._held = data
        else:
            self._batch = [self._held, data]
            self._held = None

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._slow_timer is not None:
            self._slow_timer.cancel()
        self.server.connection_closed(self)
        self.server.websocket_closed(self.messages_in, self.messages_out)
        if not self._close_delivered:
            self._close_delivered = True
            self.events.socket_close(self.handle, CLOSE_ABNORMAL, "", False)
        self._end()

    def pause_writing(self) -> None:
        # The client is not reading: stop reading what it sends, so the echoes it
        # provokes cannot pile up here, and give it send_timeout to catch up.
        self._paused = True
        self.transport.pause_reading()
        self._slow_timer = self.loop.call_later(
            self.server.options.send_timeout, self._too_slow, "did not read for"
        )

    def resume_writing(self) -> None:
        self._paused = False
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        if not self._ended:
            self.transport.resume_reading()

    def _too_slow(self, why: str) -> None:
        options = self.server.options
        logger.warning(
            "dropping a WebSocket client that %s %.0fs (%d bytes queued)",
            why,
            options.send_timeout,
            self.transport.get_write_buffer_size(),
        )
        self.transport.abort()

    # -- SocketSink: what the runtime sends ----------------------------------------------

    def send_message(self, message: Message) -> None:
        self.messages_out += 1
        protocol = self.protocol
        if type(message) is str:
            data = message.encode()
            if len(data) < 126 and protocol.deflate is None and not protocol.close_sent:
                # The common case, framed inline: FIN + text, 7-bit length, unmasked.
                self._queue(SMALL_TEXT_HEADERS[len(data)] + data)
            else:
                protocol.send_encoded_text(data)
        else:
            protocol.send_binary(message)  # type: ignore[arg-type]  # bytes, by the test above
        if self._paused and (
            self.transport.get_write_buffer_size() > self.server.options.max_send_buffer
        ):
            logger.warning("dropping a WebSocket client whose send queue passed the limit")
            self.transport.abort()

    def close(self, code: int | None, reason: str) -> None:
        protocol = self.protocol
        if protocol.close_sent or self._ended or self.transport.is_closing():
            return
        protocol.send_close(code, reason)
        if protocol.close_received:
            self._flush_and_close()
        else:
            self._close_timer = self.loop.call_later(
                self.server.options.close_timeout, self.transport.abort
            )

    # -- ConnectionHandler: what the protocol core reports ------------------------------

    def on_message(self, message: str | bytes) -> None:
        self.messages_in += 1
        self.events.socket_message(self.handle, message)

    def on_close_frame(self, code: int, reason: str) -> None:
        self._close_delivered = True
        self.events.socket_close(self.handle, code, reason, True)
        if self.protocol.close_sent:
            self._flush_and_close()

    def on_failure(self, code: int, reason: str) -> None:
        # We close the socket; unlike workerd, the object still hears about it, so
        # its bookkeeping (a connection counter, a presence list) stays exact.
        self._flush_and_close()
        if not self._close_delivered:
            self._close_delivered = True
            events = self.events
            events.socket_error(self.handle, ConnectionError(f"WebSocket protocol error: {reason}"))
            events.socket_close(self.handle, code, reason, False)

    # -- internals ---------------------------------------------------------------------

    def _flush_and_close(self) -> None:
        self._flush()
        self.transport.close()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.events.socket_end(self.handle)

    def shutdown(self, code: int = CLOSE_GOING_AWAY, reason: str = "Going Away") -> None:
        """Server is stopping or reloading: close with ``code`` and tell the object."""
        if self.protocol.close_sent:
            return
        self.close(code, reason)
        if not self._close_delivered:
            self._close_delivered = True
            self.events.socket_close(self.handle, code, reason, False)
