"""Records every request the app is given, so desync tests assert what the app saw.

- ``GET /__seen``: the requests seen so far, as JSON ``[[method, url, body], ...]``
  (this request itself is not recorded); ``GET /__seen?clear`` also forgets them.
- ``/hold``: answers once ``/release`` is called (on any connection): a slow request
  whose end the test decides, without sleeping.
- ``/ws``: a WebSocket echo (the Worker accepts any upgrade here, whatever the headers,
  so that the runtime's own handshake checks are what refuses bad ones).
- ``/refuse``: answers 403 to everything, upgrades included.
- anything else: ``seen METHOD URL BODY-LENGTH``.
"""

import asyncio

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint

SEEN = []
RELEASE = asyncio.Event()


def _path(url):
    rest = url.split("://", 1)[-1]
    return ("/" + rest.split("/", 1)[1] if "/" in rest else "/").partition("?")[0]


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = _path(request.url)
        if path == "/__seen":
            seen = list(SEEN)
            if request.url.endswith("?clear"):
                SEEN.clear()
            return Response.json(seen)
        body = await request.bytes()
        SEEN.append([request.method, request.url, body.decode("latin-1")])
        if path == "/release":
            RELEASE.set()
            return Response("released")
        if path == "/hold":
            await RELEASE.wait()
            RELEASE.clear()
            return Response("held")
        if path == "/refuse":
            return Response("refused", status=403)
        if path == "/ws":
            return await self.env.ROOM.getByName("ws").fetch(request)
        return Response(f"seen {request.method} {request.url} {len(body)}")


class Room(DurableObject):
    async def fetch(self, request):
        client, server = WebSocketPair()
        server.accept()
        server.addEventListener("message", lambda event: server.send(event.data))
        headers = {}
        offered = request.headers.get("Sec-WebSocket-Protocol")
        if offered:  # choose the client's last offer, and set a cookie with the 101
            headers["Sec-WebSocket-Protocol"] = offered.split(",")[-1].strip()
            headers["Set-Cookie"] = "session=1; HttpOnly"
            headers["Connection"] = "keep-alive"  # the runtime's to write: ignored
        return Response(None, status=101, web_socket=client, headers=headers)
