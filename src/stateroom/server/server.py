"""The listening server: accepts connections, owns the runtime, shuts down gracefully."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Protocol

from stateroom.protocol.deflate import DeflateOptions
from stateroom.protocol.frames import CLOSE_GOING_AWAY
from stateroom.runtime.interface import Events
from stateroom.server.http11 import HttpConnection
from stateroom.server.options import ServerOptions

logger = logging.getLogger("stateroom.server")


class Connection(Protocol):
    def shutdown(self) -> None: ...


class Server:
    """Serves an application over HTTP/1.1 and WebSocket on one address.

    The application is reached only through ``events``, the event interface
    (``stateroom.runtime.interface``): requests, and the events of sockets it holds
    by handle.
    """

    def __init__(
        self,
        events: Events,
        *,
        host: str = "127.0.0.1",
        port: int = 8787,
        options: ServerOptions | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.events = events
        self.host = host
        self.port = port
        self.options = options or ServerOptions()
        # The permessage-deflate policy every connection negotiates with.
        self.deflate_options = DeflateOptions(compress_threshold=self.options.compress_threshold)
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context else "http"
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        # WebSocket messages of connections already closed (open ones count their own).
        self.closed_messages_in = 0
        self.closed_messages_out = 0

    async def start(self) -> None:
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self),
            self.host,
            self.port,
            ssl=self.ssl_context,
            # A TLS handshake is part of the request head: the same slowloris bound.
            ssl_handshake_timeout=self.options.header_timeout if self.ssl_context else None,
            backlog=1024,
            reuse_address=True,
        )
        sockname = self._server.sockets[0].getsockname()
        self.port = sockname[1]
        logger.info("listening on %s://%s:%d", self.scheme, self.host, self.port)

    def connection_opened(self, conn: Connection) -> None:
        self.connections.add(conn)
        self._idle.clear()

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    def websocket_closed(self, messages_in: int, messages_out: int) -> None:
        self.closed_messages_in += messages_in
        self.closed_messages_out += messages_out

    def websocket_counts(self) -> tuple[int, int, int]:
        """(open WebSocket connections, messages received, messages sent) so far."""
        from stateroom.server.websocket import WebSocketConnection

        sockets = [c for c in self.connections if isinstance(c, WebSocketConnection)]
        return (
            len(sockets),
            self.closed_messages_in + sum(c.messages_in for c in sockets),
            self.closed_messages_out + sum(c.messages_out for c in sockets),
        )

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish, close WebSockets with 1001."""
        from stateroom.server.websocket import WebSocketConnection

        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if isinstance(conn, WebSocketConnection):
                conn.shutdown(CLOSE_GOING_AWAY, "Going Away")
            else:
                conn.shutdown()
        try:
            await asyncio.wait_for(self._idle.wait(), self.options.shutdown_grace)
        except TimeoutError:
            logger.warning(
                "%d connections still open after %.0fs; closing them",
                len(self.connections),
                self.options.shutdown_grace,
            )
        await self.events.shutdown()
