"""``workers.fetch``: outbound HTTP (and WebSockets) from a Worker or Durable Object.

stateroom's own ``fetch`` (``stateroom.api.fetch``: asyncio and llhttp, no thread) with
the SDK's option spellings; the response is a ``workers.Response``. Redirects are
followed (the Fetch API's default); an error status is a response, not an exception, as
with ``fetch`` in JavaScript; a network failure raises ``OSError``. Inside a Durable
Object the request waits for the object's pending writes (its output gate), as on
Cloudflare. ``Upgrade: websocket`` gives a 101 whose ``web_socket`` you ``accept()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stateroom
from stateroom import Headers
from stateroom.api.fetch import FetchResponse as _Fetched
from stateroom.api.fetch import fetch as _fetch
from workers.response import Response


async def _send(resource: Any, options: Mapping[str, Any]) -> _Fetched:
    """Send a request (a URL with options, or a ``Request``); returns stateroom's response."""
    method = options.get("method")
    if method:
        method = str(getattr(method, "value", method)).upper()
    headers: Any = None
    if options.get("headers") is not None:
        given = options["headers"]
        headers = Headers(given if isinstance(given, Mapping | Headers) else list(given))
    body = options.get("body")
    if isinstance(resource, stateroom.Request):
        if method is None and headers is None and body is None:
            return await _fetch(resource, redirect=str(options.get("redirect") or "follow"))
        resource = stateroom.Request(resource, method=method, headers=headers, body=body)
        return await _fetch(resource, redirect=str(options.get("redirect") or "follow"))
    return await _fetch(
        str(resource),
        method=method,
        headers=headers,
        body=body,
        redirect=str(options.get("redirect") or "follow"),
    )


async def fetch(resource: str | stateroom.Request, **options: Any) -> Response:
    """``await fetch(url, method=..., headers=..., body=...)`` -> ``workers.Response``."""
    fetched = await _send(resource, options)
    response = Response(fetched)
    response.url = fetched.url
    return response
