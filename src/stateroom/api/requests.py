"""The ``Request`` user code receives: URL, method, headers and a buffered body."""

from __future__ import annotations

import json as _json
from typing import Any

from stateroom.api.headers import Headers, HeadersInit

BodyInit = str | bytes | bytearray | memoryview | None


def _to_bytes(body: BodyInit) -> bytes:
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
        f"A body of type {kind} is not supported: use str, bytes, bytearray, memoryview "
        f"or None{hint}."
    )


class Request:
    """An HTTP request; the body is read fully by the server before dispatch.

    ``Request(url, method=..., headers=..., body=...)`` or ``Request(other_request)``
    (a copy, as ``new Request(request)`` in JavaScript).
    """

    __slots__ = ("_body", "_body_used", "headers", "method", "url")

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
            self._body: bytes = _to_bytes(body) if body is not None else input._body
        else:
            self.url = str(input)
            self.method = method.upper() if method else "GET"
            self.headers = Headers(headers)
            self._body = _to_bytes(body)
        if self._body and self.method in ("GET", "HEAD"):
            raise TypeError("Request with GET/HEAD method cannot have body.")
        self._body_used = False

    @classmethod
    def _from_wire(cls, url: str, method: str, headers: Headers, body: bytes) -> Request:
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

    async def bytes(self) -> bytes:
        self._body_used = True
        return self._body

    arrayBuffer = bytes
    array_buffer = bytes

    async def text(self) -> str:
        self._body_used = True
        return self._body.decode("utf-8", errors="replace")

    async def json(self) -> Any:
        self._body_used = True
        return _json.loads(self._body)

    def clone(self) -> Request:
        return Request(self)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"
