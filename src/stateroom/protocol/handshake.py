"""The server side of the WebSocket opening handshake (RFC 6455 section 4.2).

The runtime checks the handshake before user code sees the request and answers
invalid ones itself, with the same status, headers and body as workerd.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + GUID).digest()).decode()


@dataclass(frozen=True)
class HandshakeRejection:
    """A handshake the runtime refuses, with the exact response to send."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


def wants_websocket(upgrade_header: str | None) -> bool:
    return upgrade_header is not None and upgrade_header.strip().lower() == "websocket"


def check_request(method: str, key: str | None, version: str | None) -> HandshakeRejection | None:
    """Validate a WebSocket upgrade request; ``None`` means it may proceed."""
    if method != "GET":
        return HandshakeRejection(400, "ERROR: WebSocket must be initiated with a GET request.")
    if version is None or version.strip() != "13":
        return HandshakeRejection(
            426,
            "ERROR: The requested WebSocket version is not supported.",
            (("Sec-WebSocket-Version", "13"),),
        )
    if not key:
        return HandshakeRejection(400, "ERROR: Missing Sec-WebSocket-Key")
    return None
