"""The server side of the WebSocket opening handshake (RFC 6455 section 4.2).

The runtime checks the handshake before user code sees the request and answers
invalid ones itself, with the same status, headers and body as workerd.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Final

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY: Final = re.compile(r"[A-Za-z0-9+/]{22}==")


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


def has_token(values: list[str], token: str) -> bool:
    """Does a comma-separated list header (``Connection``) carry ``token``, in any case?"""
    for value in values:
        lower = value.lower()
        if lower == token or (token in lower and token in map(str.strip, lower.split(","))):
            return True
    return False


def valid_key(key: str) -> bool:
    """RFC 6455 4.2.1: the key is base64 of 16 bytes: 22 base64 digits, then ``==``."""
    return _KEY.fullmatch(key) is not None


def check_request(
    method: str,
    http_version: str,
    upgrade: str | None,
    connection: list[str],
    keys: list[str],
    versions: list[str],
) -> HandshakeRejection | None:
    """Validate a WebSocket opening handshake (RFC 6455 4.2.1); ``None``: it may proceed.

    The first three checks, in this order, answer as workerd does; workerd makes no
    others, and answers 101 to the rest, which RFC 6455 forbids: without ``Connection:
    Upgrade`` the client's next bytes are read as HTTP and lost, and a key that is not
    16 bytes of base64 (or is sent twice) is not a handshake.
    """
    if method != "GET":
        return HandshakeRejection(400, "ERROR: WebSocket must be initiated with a GET request.")
    if len(versions) != 1 or versions[0].strip() != "13":
        return HandshakeRejection(
            426,
            "ERROR: The requested WebSocket version is not supported.",
            (("Sec-WebSocket-Version", "13"),),
        )
    if not keys or not keys[0]:
        return HandshakeRejection(400, "ERROR: Missing Sec-WebSocket-Key")
    if len(keys) > 1:
        return HandshakeRejection(400, "ERROR: More than one Sec-WebSocket-Key")
    if not valid_key(keys[0].strip()):
        return HandshakeRejection(400, "ERROR: Sec-WebSocket-Key must be 16 bytes in base64")
    if not wants_websocket(upgrade) or not has_token(connection, "upgrade"):
        return HandshakeRejection(
            400, "ERROR: WebSocket upgrade needs Upgrade: websocket and Connection: Upgrade"
        )
    if http_version != "1.1":
        return HandshakeRejection(400, "ERROR: WebSocket must be initiated with HTTP/1.1.")
    return None
