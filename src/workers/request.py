"""``workers.Request``: Cloudflare's Python ``Request`` over ``stateroom.Request``."""

from __future__ import annotations

from typing import Any

import stateroom
from stateroom import Headers


class Request(stateroom.Request):
    """An HTTP request, as Cloudflare's Python SDK spells it.

    ``Request(url_or_request, method=..., headers=..., body=...)``; ``method`` may be an
    ``http.HTTPMethod``. ``redirect`` and ``cf`` are accepted and kept (``cf`` is None for
    requests from the network: a self-hosted server has no Cloudflare edge data). The
    requests a Worker's ``fetch`` receives are of this class. ``headers`` is a
    ``stateroom.Headers`` (case-insensitive ``get``, ``[]``, ``in``), where the SDK gives an
    ``http.client.HTTPMessage`` with the same reading methods.
    """

    __slots__ = ()

    def __init__(self, input: str | stateroom.Request, **options: Any) -> None:
        method = options.pop("method", None)
        body = options.pop("body", None)
        headers = options.pop("headers", None)
        options.pop("redirect", None)
        options.pop("cf", None)
        options.pop("fetcher", None)
        if options:
            raise TypeError(f"Request() got unexpected options: {', '.join(sorted(options))}")
        if headers is not None and not isinstance(headers, dict | list | Headers):
            raise TypeError("Received unexpected type for headers argument")
        super().__init__(
            input,
            method=str(method.value if hasattr(method, "value") else method) if method else None,
            headers=headers,
            body=body,
        )

    @classmethod
    def _adopt(cls, request: stateroom.Request) -> Request:
        """The same request as this class (the runtime makes ``stateroom.Request``s)."""
        if isinstance(request, cls):
            return request
        adopted = cls.__new__(cls)
        adopted.url = request.url
        adopted.method = request.method
        adopted.headers = request.headers
        adopted._body = request._body
        adopted._body_used = request._body_used
        return adopted

    @property
    def js_object(self) -> Request:
        """The SDK's handle on the JavaScript request: here the request itself."""
        return self

    @property
    def cf(self) -> None:
        return None

    def _raise_if_failed(self) -> None:
        if self.bodyUsed:
            raise OSError("Body already used")

    async def buffer(self) -> bytes:
        self._raise_if_failed()
        return await super().bytes()

    def clone(self) -> Request:
        self._raise_if_failed()
        return Request(self)

    def __repr__(self) -> str:
        return f"Request(method={self.method!r}, url={self.url!r})"
