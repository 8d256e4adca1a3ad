"""The proxy tests' witness: every request that reaches the app is recorded.

- ``GET /__seen``: the requests seen so far (oldest first) as JSON, each
  ``{"method", "url", "path", "host", "body"}``; ``/__seen`` itself is not recorded.
  The tests ask the server for it directly, not through the proxy.
- ``/admin...``: what a proxy's deny rule must keep out; answers ``ADMIN <path>``.
- anything else: ``seen <method> <path>`` (so a client can tell whose answer it got).
"""

import json

from stateroom import Response, WorkerEntrypoint

SEEN = []


def _path(url):
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = _path(request.url)
        if path == "/__seen":
            return Response(json.dumps(SEEN), headers={"Content-Type": "application/json"})
        body = await request.text()
        SEEN.append(
            {
                "method": request.method,
                "url": request.url,
                "path": path,
                "host": request.headers.get("Host"),
                "body": body,
            }
        )
        if path.partition("?")[0].startswith("/admin"):
            return Response(f"ADMIN {path}")
        return Response(f"seen {request.method} {path}")
