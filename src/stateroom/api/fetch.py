"""``await fetch(url)``: outbound HTTP (and WebSockets) from a Worker or a Durable Object.

HTTP/1.1 over asyncio's own connections, parsed by llhttp (``httptools``, which the
server already uses): no thread, no new dependency. One connection per request
(``Connection: close``); ``https://`` uses the standard library's ``ssl`` with the
system's certificates. The response's body is a ``ReadableStream`` read from the
socket as the caller reads it (``await response.text()`` reads it whole); a request
body may be a stream too (sent chunked). Redirects are followed (up to 20), as the
Fetch API does by default (``redirect="manual"`` returns them).

A request with ``Upgrade: websocket`` opens a WebSocket instead (the ``websockets``
client, already a dependency): the response is a 101 whose ``webSocket`` is one end
of a ``WebSocketPair``; ``accept()`` it, and its events arrive through the object's
event queue like any of its sockets', as on Cloudflare.

Inside a Durable Object, as on Cloudflare: the request leaves only once the storage
writes made before it are durable (the output gate holds it, and it is never sent if
they fail); while it is pending the input gate stays open, so other events run.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httptools

from stateroom.api.headers import Headers
from stateroom.api.requests import Request
from stateroom.api.responses import Response
from stateroom.api.streams import ReadableStream
from stateroom.api.websockets import WebSocket, WebSocketPair
from stateroom.protocol.frames import OPEN
from stateroom.runtime.context import current_host

logger = logging.getLogger("stateroom.fetch")

# Seconds to connect and to receive the response's head before fetch() fails.
FETCH_TIMEOUT_S = 60.0
MAX_REDIRECTS = 20
_READ = 64 * 1024
# Hop-by-hop and framing headers: the client writes its own.
_OWN = frozenset({"host", "connection", "content-length", "transfer-encoding", "keep-alive"})


class FetchResponse(Response):
    """What ``fetch()`` returns: a ``Response`` with the ``url`` it came from."""

    __slots__ = ("redirected", "url")

    url: str
    redirected: bool


async def fetch(
    resource: str | Request,
    *,
    method: str | None = None,
    headers: Any = None,
    body: Any = None,
    redirect: str = "follow",
) -> FetchResponse:
    """``await fetch(url, method=..., headers=..., body=...)``; a network error raises
    ``OSError`` (an error status is a response, as in JavaScript)."""
    if isinstance(resource, Request) and method is None and headers is None and body is None:
        request = resource
    else:
        request = Request(resource, method=method, headers=headers, body=body)
    await _output_gate()
    upgrade = request.headers.get("upgrade")
    if upgrade is not None and upgrade.strip().lower() == "websocket":
        return await _websocket(request)
    url = request.url
    method = request.method
    payload: bytes | ReadableStream = request._body
    for hop in range(MAX_REDIRECTS + 1):
        response = await _send(url, method, request.headers, payload)
        location = response.headers.get("location")
        if redirect != "follow" or response.status not in (301, 302, 303, 307, 308):
            response.redirected = hop > 0
            return response
        if location is None:
            response.redirected = hop > 0
            return response
        await _discard(response)
        url = urllib.parse.urljoin(url, location)
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, payload = ("HEAD" if method == "HEAD" else "GET"), b""
        elif isinstance(payload, ReadableStream):
            raise OSError(f"fetch {request.url}: cannot follow a redirect with a streamed body")
    raise OSError(f"fetch {request.url}: more than {MAX_REDIRECTS} redirects")


async def _output_gate() -> None:
    """In a Durable Object, wait until the writes made before this request are durable."""
    host = current_host.get(None)
    if host is not None:
        gate = host.output_gate
        if gate is not None and gate.pending:
            await gate.wait_released()


async def _discard(response: Response) -> None:
    stream = response._stream
    if stream is not None:
        await stream.aclose()


class _Parsed:
    """httptools' callbacks for one response."""

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.head_done = False
        self.done = False
        self.reason = ""

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


async def _send(
    url: str, method: str, headers: Headers, body: bytes | ReadableStream
) -> FetchResponse:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"fetch {url}: only http:// and https:// URLs can be fetched")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context = ssl.create_default_context() if secure else None
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(
                parts.hostname, port, ssl=context, limit=_READ
            )
    except (OSError, TimeoutError) as exc:
        raise OSError(f"fetch {url}: {exc or type(exc).__name__}") from None
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}"]
        lines += [f"{n}: {v}" for n, v in headers.items() if n.lower() not in _OWN]
        lines.append("Connection: close")
        streamed = isinstance(body, ReadableStream)
        if streamed:
            lines.append("Transfer-Encoding: chunked")
        elif body or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            lines.append(f"Content-Length: {len(body)}")  # type: ignore[arg-type]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if isinstance(body, ReadableStream):
            async for chunk in body:
                writer.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif body:
            writer.write(body)
        await writer.drain()
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            while not parsed.head_done:
                data = await reader.read(_READ)
                if not data:
                    raise OSError(f"fetch {url}: the connection closed before a response")
                parser.feed_data(data)
        status = parser.get_status_code()
    except httptools.HttpParserError as exc:
        writer.close()
        raise OSError(f"fetch {url}: malformed response: {exc}") from None
    except (OSError, TimeoutError) as exc:
        writer.close()
        if isinstance(exc, OSError) and str(exc).startswith("fetch "):
            raise
        raise OSError(f"fetch {url}: {exc or type(exc).__name__}") from None
    no_body = method == "HEAD" or status in (204, 304) or status < 200
    if no_body:
        writer.close()
        stream: ReadableStream | None = None
    else:
        stream = ReadableStream(_body(url, reader, writer, parser, parsed))
    response = FetchResponse.__new__(FetchResponse)
    Response.__init__(
        response,
        None,
        status if 200 <= status <= 599 else 502,
        Headers(parsed.headers),
        statusText=parsed.reason or None,
    )
    response._body = stream
    response.url = url
    response.redirected = False
    return response


async def _body(
    url: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    parser: httptools.HttpResponseParser,
    parsed: _Parsed,
) -> AsyncIterator[bytes]:
    """The response body, read from the socket only as fast as the caller reads it."""
    try:
        while True:
            if parsed.chunks:
                chunk = b"".join(parsed.chunks)
                parsed.chunks.clear()
                yield chunk
            if parsed.done:
                return
            data = await reader.read(_READ)
            if not data:
                # Without a length or chunked framing the body ends with the connection.
                if parsed.headers and not any(
                    n.lower() in ("content-length", "transfer-encoding") for n, _ in parsed.headers
                ):
                    return
                raise OSError(f"fetch {url}: the connection closed in the middle of the body")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise OSError(f"fetch {url}: malformed response body: {exc}") from None
    finally:
        writer.close()


# -- outbound WebSockets -----------------------------------------------------------------


async def _websocket(request: Request) -> FetchResponse:
    """``fetch(url, headers={"Upgrade": "websocket"})``: a 101 whose ``webSocket`` you accept."""
    from websockets.asyncio.client import connect

    parts = urllib.parse.urlsplit(request.url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise OSError(f"fetch {request.url}: a WebSocket needs an http(s):// or ws(s):// URL")
    url = urllib.parse.urlunsplit((scheme, *parts[1:]))
    offered = request.headers.get("sec-websocket-protocol")
    subprotocols = [p.strip() for p in offered.split(",")] if offered else None
    skip = _OWN | {
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
    extra = [(n, v) for n, v in request.headers.items() if n.lower() not in skip]
    try:
        connection = await connect(
            url,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            additional_headers=extra,
            compression="deflate",
            open_timeout=FETCH_TIMEOUT_S,
        )
    except Exception as exc:
        raise OSError(f"fetch {request.url}: WebSocket handshake failed: {exc}") from None
    # ``local`` is the end the caller accepts; ``remote`` is bridged to the network.
    remote, local = WebSocketPair().object_values()
    local.url = remote.url = url
    local.protocol = remote.protocol = connection.subprotocol or ""
    handshake = connection.response
    agreed = handshake.headers.get("Sec-WebSocket-Extensions", "") if handshake else ""
    local.extensions = remote.extensions = agreed
    _Bridge(connection, remote).start()
    response = FetchResponse.__new__(FetchResponse)
    Response.__init__(response, None, status=101, web_socket=local)
    response.url = url
    response.redirected = False
    return response


class _Bridge:
    """Carries messages between the network connection and the pair's ``remote`` end."""

    def __init__(self, connection: Any, remote: WebSocket) -> None:
        self.connection = connection
        self.remote = remote
        self.outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.close_args: tuple[int, str] = (1000, "")

    def start(self) -> None:
        remote = self.remote
        remote.accept()
        remote.addEventListener("message", lambda event: self.outbox.put_nowait(event.data))
        remote.addEventListener("close", self._close_requested)
        task = asyncio.get_running_loop().create_task(self._run())
        _BRIDGES.add(task)
        task.add_done_callback(_BRIDGES.discard)

    def _close_requested(self, event: Any) -> None:
        code = event.code
        self.close_args = (code if code not in (1005, 1006) else 1000, event.reason)
        self.outbox.put_nowait(None)

    async def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        connection = self.connection
        remote = self.remote
        sender = asyncio.get_running_loop().create_task(self._send_all())
        try:
            async for message in connection:
                if remote.readyState == OPEN:
                    remote.send(message)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("outbound WebSocket to %s failed", remote.url)
        finally:
            sender.cancel()
        code = connection.close_code
        if remote.readyState == OPEN:
            if code is not None and code not in (1005, 1006):
                remote.close(code, connection.close_reason or "")
            else:
                remote.close(None, "")

    async def _send_all(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None:
                await self.connection.close(*self.close_args)
                return
            await self.connection.send(message)


_BRIDGES: set[asyncio.Task[Any]] = set()
