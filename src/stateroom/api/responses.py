"""The ``Response`` user code returns, including the 101 that carries a WebSocket."""

from __future__ import annotations

import json as _json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from stateroom.api.headers import Headers, HeadersInit
from stateroom.api.requests import BodyInit, _to_body
from stateroom.api.streams import ReadableStream

if TYPE_CHECKING:
    from stateroom.api.websockets import WebSocket

# What the Fetch API gives a string body; workerd sends exactly this spelling.
TEXT_PLAIN = "text/plain;charset=UTF-8"


class _JsonMember:
    """``Response.json(data)`` builds a response; ``await response.json()`` reads one.

    The Fetch API uses one name for both (a static factory and a body reader),
    so the attribute resolves differently on the class and on an instance.
    """

    def __get__(self, obj: Response | None, cls: type[Response]) -> Any:
        if obj is None:
            return cls._from_json
        return obj._read_json


class Response:
    """An HTTP response.

    ``Response(body, status=200, headers=None, web_socket=None)``; ``webSocket=``
    is accepted too, as in Cloudflare's JavaScript API. A ``str`` body gets
    ``Content-Type: text/plain;charset=UTF-8`` unless headers set one. A body that is
    an async iterable (an ``async def`` generator yielding bytes or str, or a
    ``ReadableStream`` such as another request's ``body``) is streamed: sent chunk by
    chunk as it is produced (``Transfer-Encoding: chunked`` on HTTP/1.1).
    """

    __slots__ = ("_body", "headers", "status", "statusText", "webSocket")

    def __init__(
        self,
        body: BodyInit = None,
        status: int = 200,
        headers: HeadersInit = None,
        *,
        status_text: str | None = None,
        statusText: str | None = None,
        web_socket: WebSocket | None = None,
        webSocket: WebSocket | None = None,
    ) -> None:
        status = int(status)
        ws = web_socket if web_socket is not None else webSocket
        if ws is not None:
            if status != 101:
                raise ValueError("Responses with a WebSocket must have status 101.")
        elif not 200 <= status <= 599:
            raise ValueError(
                f"Responses may only be constructed with status codes in the range 200 to 599, "
                f"inclusive (got {status})."
            )
        self.status: int = status
        self.headers: Headers = Headers(headers)
        text = statusText if statusText is not None else status_text
        self.statusText: str = text if text is not None else _reason(status)
        self.webSocket: WebSocket | None = ws
        self._body: bytes | ReadableStream | None = None if body is None else _to_body(body)
        if isinstance(body, str) and not self.headers.has("content-type"):
            self.headers.append("Content-Type", TEXT_PLAIN)

    @property
    def web_socket(self) -> WebSocket | None:
        return self.webSocket

    @property
    def status_text(self) -> str:
        return self.statusText

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    @property
    def body(self) -> bytes | ReadableStream | None:
        """The body: bytes as given, a ``ReadableStream`` if it streams, or None."""
        return self._body

    @property
    def _stream(self) -> ReadableStream | None:
        body = self._body
        return body if isinstance(body, ReadableStream) else None

    async def bytes(self) -> bytes:
        body = self._body
        if isinstance(body, ReadableStream):
            body = self._body = await body.readall()
        return body or b""

    arrayBuffer = bytes
    array_buffer = bytes

    async def text(self) -> str:
        return (await self.bytes()).decode("utf-8", errors="replace")

    json = _JsonMember()

    async def _read_json(self) -> Any:
        return _json.loads(await self.bytes())

    @classmethod
    def _from_json(cls, data: Any, status: int = 200, headers: HeadersInit = None) -> Response:
        response = cls(_json.dumps(data, separators=(",", ":")), status=status, headers=headers)
        response.headers.set("Content-Type", "application/json")
        return response

    @classmethod
    def redirect(cls, url: str, status: int = 302) -> Response:
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"Invalid redirect status {status}.")
        return cls(None, status=status, headers={"Location": url})

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
