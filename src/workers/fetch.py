"""``workers.fetch``: outbound HTTP from a Worker.

The request is made with the standard library's HTTP client in a worker thread, so the
Worker's event loop keeps serving while it waits. Redirects are followed (the Fetch API's
default); an error status is a response, not an exception, as with ``fetch`` in
JavaScript; a network failure raises ``OSError``.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import stateroom
from stateroom import Headers
from workers.response import Response

# Seconds to wait for a connection or a read before the fetch fails with OSError.
FETCH_TIMEOUT_S = 60.0

_Result = tuple[int, str, list[tuple[str, str]], bytes, str]


def _blocking_send(
    url: str, method: str, headers: list[tuple[str, str]], body: bytes | None
) -> _Result:
    request = urllib.request.Request(url, data=body, method=method)
    for name, value in headers:
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as reply:
            return (
                reply.status,
                reply.reason,
                list(reply.headers.items()),
                reply.read(),
                reply.url,
            )
    except urllib.error.HTTPError as exc:
        with exc:
            return (exc.code, str(exc.reason), list(exc.headers.items()), exc.read(), url)
    except urllib.error.URLError as exc:
        raise OSError(f"fetch {url}: {exc.reason}") from None


async def _send(resource: Any, options: Mapping[str, Any]) -> _Result:
    """Send a request (a URL with options, or a ``Request``); returns the reply's parts."""
    if isinstance(resource, stateroom.Request):
        url, method = resource.url, resource.method
        headers = Headers(resource.headers)
        body: bytes | None = await resource.bytes() or None
    else:
        url, method, headers, body = str(resource), "GET", Headers(), None
    if options.get("method"):
        method = str(getattr(options["method"], "value", options["method"])).upper()
    if options.get("headers") is not None:
        given = options["headers"]
        headers = Headers(given if isinstance(given, Mapping | Headers) else list(given))
    if options.get("body") is not None:
        raw = options["body"]
        body = raw.encode() if isinstance(raw, str) else bytes(raw)
    # urllib adds its own Content-Length for a body; a hop-by-hop header must not be copied.
    pairs = [(n, v) for n, v in headers.items() if n.lower() not in ("content-length", "host")]
    return await asyncio.to_thread(_blocking_send, url, method, pairs, body)


async def fetch(resource: str | stateroom.Request, **options: Any) -> Response:
    """``await fetch(url, method=..., headers=..., body=...)`` -> ``workers.Response``."""
    status, reason, headers, body, final_url = await _send(resource, options)
    response = Response(body or None, status, reason, headers)
    response.url = final_url
    return response
