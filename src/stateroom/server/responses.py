"""Serialising responses to HTTP/1.1 bytes, with the header order workerd uses.

Clients that compare bytes see exactly what Cloudflare's runtime sends: no
``Date`` or ``Server``; an application response lists ``Content-Length`` first,
then its own headers, then ``Connection``; HEAD responses carry no length.
"""

from __future__ import annotations

from http import HTTPStatus

from stateroom.api.responses import Response

# Where workerd's phrase differs from Python's (RFC 9110 names).
_PHRASES = {413: "Payload Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable"}


def reason_phrase(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def serialize_response(
    response: Response, *, version: str, head: bool, connection: str | None
) -> list[bytes]:
    """Status line + headers (+ body unless HEAD) of an application response."""
    body = response.body
    lines = [
        f"HTTP/{version} {response.status} {response.statusText or reason_phrase(response.status)}"
    ]
    if not head:
        lines.append(f"Content-Length: {len(body) if body is not None else 0}")
    for name, value in response.headers.items():
        lower = name.lower()
        if lower in ("content-length", "connection", "transfer-encoding", "keep-alive"):
            continue
        lines.append(f"{name}: {value}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if head or not body:
        return [head_bytes]
    if len(body) < 16384:
        return [head_bytes + body]
    return [head_bytes, body]


def internal_error() -> Response:
    """What a client gets when the app raised, or its response could not be sent."""
    return Response("Internal Server Error", status=500, headers={"Content-Type": "text/plain"})


def error_response(
    status: int,
    body: str,
    *,
    version: str = "1.1",
    order: str = "type-first",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A response the runtime itself generates (parse errors, rejected handshakes).

    workerd uses two header orders for these: parser errors put
    ``Content-Type`` first (``type-first``); WebSocket handshake errors put
    ``Connection`` first (``connection-first``).
    """
    payload = body.encode("utf-8")
    status_line = f"HTTP/{version} {status} {reason_phrase(status)}"
    if order == "type-first":
        headers = [
            ("Content-Type", "text/plain"),
            ("Connection", "close"),
            ("Content-Length", str(len(payload))),
            *extra,
        ]
    else:
        headers = [
            ("Connection", "close"),
            ("Content-Length", str(len(payload))),
            *extra,
            ("Content-Type", "text/plain"),
        ]
    text = status_line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return text.encode("latin-1") + payload
