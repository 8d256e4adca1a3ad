"""``ctx`` of a Durable Object: its id, storage, and control over its events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from stateroom.api.websockets import WebSocket, WebSocketRequestResponsePair
from stateroom.protocol.frames import CLOSED
from stateroom.runtime.gates import ObjectResetError

if TYPE_CHECKING:
    from stateroom.api.namespace import DurableObjectId
    from stateroom.runtime.actor import ActorHost
    from stateroom.storage.kv import DurableObjectStorage

T = TypeVar("T")


class DurableObjectAbort(ObjectResetError):
    """Raised by ``ctx.abort(reason)``: the object has been reset.

    Raised after the reset, so catching it does not save the instance; a caller's stub
    sees it (``.remote`` set), as a caller does on Cloudflare.
    """


class DurableObjectState:
    """The state handed to a Durable Object's constructor as ``ctx``."""

    def __init__(self, host: ActorHost) -> None:
        self._host = host
        self.id: DurableObjectId = host.id

    @property
    def storage(self) -> DurableObjectStorage:
        """This object's storage: key-value and (SQLite-backed classes) SQL."""
        if self._host.ctx is not self:
            raise ObjectResetError(
                f"Durable Object {self.id}: this instance was reset or left memory; its "
                "storage now belongs to the next instance"
            )
        return self._host.open_storage()

    def abort(self, reason: str | None = None) -> NoReturn:
        """Reset the object now, as Cloudflare's ``ctx.abort()``: uncommitted writes and
        held outputs are dropped, the next event constructs a new instance, and
        ``DurableObjectAbort`` ends the running handler (its caller sees it)."""
        message = reason or "Durable Object abort requested"
        if self._host.ctx is self:  # not already reset (an abort from a dying instance)
            self._host.reset(f"ctx.abort(): {message}")
        raise DurableObjectAbort(message)

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:
        """Keep the object alive until ``awaitable`` finishes."""

        async def run() -> None:
            await awaitable

        self._host.spawn(run())

    wait_until = waitUntil

    def blockConcurrencyWhile(self, fn: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """Deliver no other event to this object until ``fn()`` completes.

        The gate closes at once, so the constructor may call this without awaiting
        (the usual pattern, to load state before the first event); await the returned
        task for ``fn``'s result. If ``fn`` raises, or runs past the time limit (30 s),
        the object is reset (the object's input gate does both).
        """
        host = self._host
        return host.spawn(
            host.gate.block_concurrency_while(fn, host.namespace.options.block_timeout)
        )

    block_concurrency_while = blockConcurrencyWhile

    # -- WebSocket Hibernation API ---------------------------------------------

    def acceptWebSocket(self, ws: WebSocket, tags: list[str] | None = None) -> None:
        """Accept ``ws`` so that it stays open while this object hibernates.

        Its events go to ``webSocketMessage(ws, message)``,
        ``webSocketClose(ws, code, reason, wasClean)`` and ``webSocketError(ws, error)``.
        """
        host = self._host
        if ws._accepted:
            raise RuntimeError("acceptWebSocket(): this WebSocket was already accepted")
        if ws._peer is None:
            raise TypeError("acceptWebSocket() takes the server end of a WebSocketPair")
        record = host.hibernation.accept(ws, tags)
        if ws._hib is not None:  # an attachment serialized before
            record.attachment = ws._hib.attachment
        ws._hib = record
        ws._host = host
        ws._mark_accepted()

    accept_web_socket = acceptWebSocket

    def getWebSockets(self, tag: str | None = None) -> list[WebSocket]:
        """This object's hibernatable WebSockets not yet closed (open or closing, as on
        Cloudflare), optionally only those with ``tag``."""
        return [ws for ws in self._host.hibernation.tagged(tag) if ws.readyState != CLOSED]

    get_websockets = getWebSockets

    def getTags(self, ws: WebSocket) -> list[str]:
        record = ws._hib
        if record is None or record.manager is None:
            raise TypeError("getTags(): this WebSocket was not accepted with acceptWebSocket()")
        return list(record.tags)

    get_tags = getTags

    def setWebSocketAutoResponse(self, pair: WebSocketRequestResponsePair | None = None) -> None:
        """Answer ``pair.request`` with ``pair.response`` without waking the object."""
        self._host.hibernation.auto_response = (
            None if pair is None else (pair.request, pair.response)
        )

    set_websocket_auto_response = setWebSocketAutoResponse

    def getWebSocketAutoResponse(self) -> WebSocketRequestResponsePair | None:
        auto = self._host.hibernation.auto_response
        return None if auto is None else WebSocketRequestResponsePair(*auto)

    get_websocket_auto_response = getWebSocketAutoResponse

    def getWebSocketAutoResponseTimestamp(self, ws: WebSocket) -> datetime | None:
        ts = None if ws._hib is None else ws._hib.auto_response_timestamp
        return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)

    get_websocket_auto_response_timestamp = getWebSocketAutoResponseTimestamp

    def setHibernatableWebSocketEventTimeout(self, ms: int | None = None) -> None:
        """At most ``ms`` milliseconds per hibernatable WebSocket event; no argument or 0
        unsets it, as on Cloudflare."""
        if ms is not None and not 0 <= ms <= 7 * 24 * 3600 * 1000:
            raise ValueError("the event timeout must be between 0 (unset) and 7 days in ms")
        self._host.hibernation.event_timeout_ms = ms or None

    set_hibernatable_websocket_event_timeout = setHibernatableWebSocketEventTimeout

    def getHibernatableWebSocketEventTimeout(self) -> int | None:
        return self._host.hibernation.event_timeout_ms

    get_hibernatable_websocket_event_timeout = getHibernatableWebSocketEventTimeout
