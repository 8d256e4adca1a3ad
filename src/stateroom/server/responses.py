"""Serialising responses to HTTP/1.1 bytes, with the header order workerd uses.

Clients that compare bytes see exactly what Cloudflare's runtime sends: no
``Date`` or ``Server``; an application response lists ``Content-Length`` first,
then its own headers, then ``Connection``; HEAD responses carry no length.
"""

from __future__ import annotations

import html
import traceback
from http import HTTPStatus
from typing import cast

from stateroom.api.responses import Response
from stateroom.runtime.trace import ObjectInfo

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
    body = cast("bytes | None", response.body)  # a streaming body is written elsewhere
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


def serialize_stream_head(
    response: Response, *, version: str, head: bool, connection: str | None, chunked: bool
) -> bytes:
    """Status line and headers of a response whose body streams.

    ``Transfer-Encoding: chunked`` when ``chunked``; else the app's own
    ``Content-Length`` if it gave one, or none (the body ends with the connection).
    """
    lines = [
        f"HTTP/{version} {response.status} {response.statusText or reason_phrase(response.status)}"
    ]
    for name, value in response.headers.items():
        lower = name.lower()
        if lower in ("connection", "transfer-encoding", "keep-alive"):
            continue
        if lower == "content-length" and (chunked or head):
            continue
        lines.append(f"{name}: {value}")
    if chunked and not head:
        lines.append("Transfer-Encoding: chunked")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def internal_error(request_id: str | None = None) -> Response:
    """What a client gets when the app raised, or its response could not be sent.

    With a request id (``stateroom serve``), the body and ``X-Request-Id`` carry it: the
    log line with the traceback carries the same id.
    """
    if request_id is None:
        return Response("Internal Server Error", status=500, headers={"Content-Type": "text/plain"})
    return Response(
        f"Internal Server Error (request id {request_id})",
        status=500,
        headers={"Content-Type": "text/plain", "X-Request-Id": request_id},
    )


def prefers_html(accept: str | None) -> bool:
    """Does an ``Accept`` header rank ``text/html`` above ``text/plain``?

    A browser's (``text/html,...,*/*;q=0.8``) does; curl's ``*/*`` ties, so plain text.
    """
    if not accept:
        return False
    html = plain = 0.0
    for item in accept.split(","):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media == "text/html":
            html = max(html, q)
        elif media == "text/plain":
            plain = max(plain, q)
        elif media in ("*/*", "text/*") and plain == 0.0:
            plain = q
    return html > plain


def debug_error_response(
    exc: BaseException, method: str, url: str, where: ObjectInfo | None, accept: str | None
) -> Response:
    """``stateroom dev``'s 500: the traceback, the request, and the object that raised.

    Plain text, or a self-contained HTML page (everything escaped) for a client that
    prefers ``text/html``.
    """
    trace = "".join(traceback.format_exception(exc))
    place = str(where) if where is not None else "the Worker (Default)"
    if not prefers_html(accept):
        text = (
            f"Internal Server Error\n\n{type(exc).__name__} in {place}\n"
            f"while handling {method} {url}\n\n{trace}"
        )
        return Response(text, status=500, headers={"Content-Type": "text/plain; charset=utf-8"})
    e = html.escape
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>500 {e(type(exc).__name__)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}"
        "h1{color:#b00020}</style></head><body>\n"
        f"<h1>{e(type(exc).__name__)}: {e(str(exc))}</h1>\n"
        f"<p>in <b>{e(place)}</b> while handling <code>{e(method)} {e(url)}</code></p>\n"
        f"<pre>{e(trace)}</pre>\n"
        "<p><small>stateroom dev shows this page; stateroom serve answers "
        "&ldquo;Internal Server Error&rdquo; and logs the traceback.</small></p>\n"
        "</body></html>\n"
    )
    return Response(page, status=500, headers={"Content-Type": "text/html; charset=utf-8"})


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
