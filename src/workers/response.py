"""``workers.Response`` and ``workers.FetchResponse`` over ``stateroom.Response``."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import stateroom
from stateroom import Headers

_BODY_TYPES = (str, bytes, bytearray, memoryview)


def _status(value: HTTPStatus | int | None, default: int) -> int:
    if value is None or value == 0:
        return default
    return int(value.value if isinstance(value, HTTPStatus) else value)


def _headers(value: Any) -> Any:
    if value is None or isinstance(value, dict | list | Headers):
        return value
    raise TypeError("Received unexpected type for headers argument")


class _Json:
    """``Response.json(data, ...)`` builds a response (as ``from_json``); on a response,
    ``await response.json()`` reads its body."""

    def __get__(self, obj: FetchResponse | None, cls: type[FetchResponse]) -> Any:
        if obj is None:
            return cls.from_json
        return obj._read_json


class FetchResponse(stateroom.Response):
    """A response with the SDK's reading methods: ``text()``, ``json()``, ``bytes()``,
    ``buffer()``, plus ``url``, ``ok``, ``status_text``, ``js_object``.

    Responses from ``workers.fetch`` and the ``Response`` a Worker builds are this class.
    """

    __slots__ = ("url",)

    def __init__(
        self,
        body: Any = None,
        status: int = 200,
        headers: Any = None,
        *,
        status_text: str | None = None,
        web_socket: Any = None,
        url: str = "",
    ) -> None:
        super().__init__(
            body, status, headers, status_text=status_text or None, web_socket=web_socket
        )
        self.url = url

    json = _Json()

    @property
    def js_object(self) -> FetchResponse:
        """The SDK's handle on the JavaScript response: here the response itself."""
        return self

    @property
    def redirected(self) -> bool:
        return False

    @property
    def type(self) -> str:
        return "default"

    async def buffer(self) -> bytes:
        return await self.bytes()

    def clone(self) -> FetchResponse:
        copy: FetchResponse = type(self)._copy(self, self.body)
        return copy

    def replace_body(self, body: Any) -> Response:
        """A response with this one's status and headers and a new body."""
        copy: Response = Response._copy(self, body)
        return copy

    @classmethod
    def _copy(cls, other: stateroom.Response, body: Any) -> Any:
        copy = cls.__new__(cls)
        stateroom.Response.__init__(
            copy,
            body,
            other.status,
            Headers(other.headers),
            statusText=other.statusText,
            webSocket=other.webSocket,
        )
        copy.url = getattr(other, "url", "")
        return copy

    @classmethod
    def from_json(
        cls,
        data: Any,
        status: HTTPStatus | int = HTTPStatus.OK,
        status_text: str = "",
        headers: Any = None,
    ) -> Response:
        """A JSON response: ``data`` serialized, ``Content-Type: application/json``."""
        all_headers = Headers(_headers(headers))
        if not all_headers.has("content-type"):
            all_headers.set("content-type", "application/json")
        return Response(json.dumps(data), _status(status, 200), status_text, all_headers)

    @staticmethod
    def redirect(url: str, status: HTTPStatus | int = HTTPStatus.FOUND) -> Response:
        code = _status(status, 302)
        if code not in (301, 302, 303, 307, 308):
            raise ValueError(f"Invalid redirect status {code}.")
        return Response(None, code, headers={"Location": url})

    def __repr__(self) -> str:
        parts = [f"status={self.status}"]
        if self.headers.has("content-type"):
            parts.append(f"content_type={self.headers.get('content-type')!r}")
        if self.url:
            parts.append(f"url={self.url!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class Response(FetchResponse):
    """``Response(body=None, status=200, status_text="", headers=None, web_socket=None)``:
    Cloudflare's Python SDK signature (note ``status_text`` before ``headers``).

    ``statusText=`` and ``webSocket=`` (the JavaScript spellings) work too. A ``js.Response``
    (or any ``stateroom.Response``) as the body makes a copy of it, as in the SDK.
    """

    __slots__ = ()

    def __init__(
        self,
        body: Any = None,
        status: HTTPStatus | int | None = None,
        status_text: str = "",
        headers: Any = None,
        web_socket: Any = None,
        *,
        statusText: str | None = None,
        webSocket: Any = None,
    ) -> None:
        if isinstance(body, stateroom.Response):
            if status is not None or status_text or headers is not None:
                raise ValueError(
                    "Expected no options when constructing Response from a js.Response"
                )
            stateroom.Response.__init__(
                self,
                body.body,
                body.status,
                Headers(body.headers),
                statusText=body.statusText,
                webSocket=body.webSocket,
            )
            self.url = getattr(body, "url", "")
            return
        if body is not None and not isinstance(body, _BODY_TYPES):
            raise TypeError(f"Unsupported type in Response: {type(body).__name__}")
        super().__init__(
            body,
            _status(status, 200),
            _headers(headers),
            status_text=status_text or statusText,
            web_socket=web_socket if web_socket is not None else webSocket,
        )
