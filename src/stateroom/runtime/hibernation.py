"""WebSocket hibernation: sockets that stay open while their object leaves memory.

A socket accepted with ``ctx.acceptWebSocket()`` belongs to the object's host,
not to the instance. When the object has nothing else going on, the host drops
the instance (hibernates) but keeps the sockets, their tags and attachments; the
next message, close or error constructs the object again and calls its
``webSocketMessage`` / ``webSocketClose`` / ``webSocketError`` handler.
An auto-response pair is answered by the host without waking the object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from stateroom.storage.encoding import decode, encode

if TYPE_CHECKING:
    from stateroom.api.websockets import WebSocket
    from stateroom.runtime.actor import ActorHost

logger = logging.getLogger("stateroom.hibernation")

# Cloudflare's limits.
MAX_ATTACHMENT_SIZE = 16 * 1024
MAX_TAGS = 10
MAX_TAG_LENGTH = 256
MAX_SOCKETS_PER_OBJECT = 32768

_HANDLERS = {
    "message": ("webSocketMessage", "web_socket_message"),
    "close": ("webSocketClose", "web_socket_close"),
    "error": ("webSocketError", "web_socket_error"),
}


def serialize_attachment(value: Any) -> bytes | None:
    if value is None:
        return None
    data = encode(value)
    if len(data) > MAX_ATTACHMENT_SIZE:
        raise ValueError(
            f"serializeAttachment(): the serialized value is {len(data)} bytes; "
            f"the limit is {MAX_ATTACHMENT_SIZE} bytes. Store large state in ctx.storage "
            "and keep only a key in the attachment."
        )
    return data


def deserialize_attachment(data: bytes | None) -> Any:
    return None if data is None else decode(data)


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


def dispatch(
    host: ActorHost, ws: WebSocket, kind: str, args: tuple[Any, ...]
) -> Coroutine[Any, Any, Any] | None:
    """Call the object's handler for a hibernatable socket's event, waking it if needed."""
    obj = host.activate()
    if kind == "close":
        code, reason, was_clean = args
        ws._closing_received()
        handler = _handler(obj, kind)
        if handler is None:
            ws._auto_close(code)
            return None
        return _close_then_reply(handler(ws, code, reason, was_clean), ws, code)
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
    if host.event_timeout_ms is not None:
        return _bounded(result, host.event_timeout_ms / 1000)
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


async def _close_then_reply(result: Any, ws: WebSocket, code: int) -> None:
    if hasattr(result, "__await__"):
        await result
    ws._auto_close(code)
