"""The ``Request`` user code receives: URL, method, headers and a body.

A body from the network is a ``ReadableStream`` fed as it arrives (``request.body``):
``await request.bytes()`` / ``text()`` / ``json()`` read it whole; ``async for chunk in
request.body`` reads it in bounded memory.
"""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from stateroom.api.headers import Headers, HeadersInit
from stateroom.api.streams import ReadableStream, as_stream

BodyInit = str | bytes | bytearray | memoryview | ReadableStream | AsyncIterable[Any] | None


def _to_body(body: BodyInit) -> bytes | ReadableStream:
    """A body as given: bytes, or a stream for an async iterable (read as it is sent)."""
    if body is None or type(body) is str or type(body) is bytes:
        return _to_bytes(body)  # the usual bodies: no look-up of __aiter__
    stream = as_stream(body)
    if stream is not None:
        return stream
    return _to_bytes(body)


def _to_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    # bytes(5) would be five zero bytes, bytes({...}) a confusing message: say what works.
    kind = type(body).__name__
    hint = " (for JSON, use Response.json(value))" if isinstance(body, dict | list) else ""
    raise TypeError(
        f"A body of type {kind} is not supported: use str, bytes, bytearray, memoryview, "
        f"an async iterable of bytes or str (a stream), or None{hint}."
    )


class Request:
    """An HTTP request.

    ``Request(url, method=..., headers=..., body=...)`` or ``Request(other_request)``
    (a copy, as ``new Request(request)`` in JavaScript: a streaming body moves to the
    copy). ``body`` may be an async iterable of bytes or str, sent as it is read.
    """

    __slots__ = ("_body", "_body_used", "headers", "method", "url")

    _body_used: bool

    def __init__(
        self,
        input: str | Request,
        *,
        method: str | None = None,
        headers: HeadersInit = None,
        body: BodyInit = None,
    ) -> None:
        if isinstance(input, Request):
            self.url: str = input.url
            self.method: str = method.upper() if method else input.method
            self.headers: Headers = Headers(headers if headers is not None else input.headers)
            if body is not None:
                self._body: bytes | ReadableStream = _to_body(body)
            else:
                self._body = input._body
                if isinstance(self._body, ReadableStream):
                    input._body_used = True  # the stream moved to this request
        else:
            self.url = str(input)
            self.method = method.upper() if method else "GET"
            self.headers = Headers(headers)
            self._body = _to_body(body)
        if self._body and self.method in ("GET", "HEAD"):
            raise TypeError("Request with GET/HEAD method cannot have body.")
        self._body_used = False

    @classmethod
    def _from_wire(
        cls, url: str, method: str, headers: Headers, body: bytes | ReadableStream
    ) -> Request:
        """Build from the HTTP parser's output without re-validating it."""
        request = cls.__new__(cls)
        request.url = url
        request.method = method
        request.headers = headers
        request._body = body
        request._body_used = False
        return request

    @property
    def bodyUsed(self) -> bool:
        return self._body_used

    body_used = bodyUsed

    @property
    def body(self) -> ReadableStream | None:
        """The body as a stream (``async for chunk in request.body``); None without one."""
        body = self._body
        if isinstance(body, ReadableStream):
            self._body_used = True
            return body
        if not body:
            return None
        self._body_used = True
        return ReadableStream(_once(body))

    async def bytes(self) -> bytes:
        self._body_used = True
        body = self._body
        if isinstance(body, ReadableStream):
            body = self._body = await body.readall()
        return body

    arrayBuffer = bytes
    array_buffer = bytes

    async def text(self) -> str:
        return (await self.bytes()).decode("utf-8", errors="replace")

    async def json(self) -> Any:
        return _json.loads(await self.bytes())

    def clone(self) -> Request:
        if isinstance(self._body, ReadableStream):
            raise TypeError(
                "clone() of a request whose body is a stream: read it first "
                "(await request.bytes()), then clone."
            )
        return Request(self)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body
