"""The hostile-client tests' app: the example's echo and counter, plus a few probes.

- ``/websocket``: echo with the example's prefix; the text ``blast N SIZE`` makes the
  object send N distinct binary messages of SIZE bytes back (to a client that may not read).
- ``/getCurrentConnections``: the example's counter text.
- ``/slow``: answers after 0.5 s (prints ``slow-start`` when it begins).
- ``/version``: ``VERSION`` (the dev-reload test rewrites it).
- ``/url``: the request's URL as the app sees it.
- ``/stats``: how many upgrade requests reached the Worker (the origin check must stop
  refused ones before any app code runs).
"""

import asyncio

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint

VERSION = "v1"
STATS = {"upgrades": 0}


def _path(url):
    rest = url.split("://", 1)[-1]
    path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path.partition("?")[0]


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.headers.get("Upgrade") is not None:
            STATS["upgrades"] += 1
        path = _path(request.url)
        if path == "/version":
            return Response(VERSION)
        if path == "/stats":
            return Response.json(STATS)
        if path == "/url":
            return Response(request.url)
        if path == "/big":
            return Response(b"x" * 262144)
        if path == "/slow":
            print("slow-start", flush=True)
            await asyncio.sleep(0.5)
            return Response("slow done")
        stub = self.env.ROOM.getByName("main")
        return await stub.fetch(request)


class Room(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.connected = 0

    async def fetch(self, request):
        path = _path(request.url)
        if path.endswith("/websocket"):
            if request.headers.get("Upgrade") != "websocket":
                return Response("Durable Object expected Upgrade: websocket", status=426)
            client, server = WebSocketPair()
            server.accept()
            self.connected += 1

            async def on_message(event):
                data = event.data
                if isinstance(data, str) and data.startswith("blast "):
                    _, count, size = data.split()
                    for i in range(int(count)):
                        if server.readyState != 1:
                            return
                        server.send(bytes([i % 256]) * int(size))  # a new object each time
                        await asyncio.sleep(0)
                elif isinstance(data, str):
                    server.send(f"[Durable Object]: {data}")
                else:
                    server.send(b"[Durable Object]: " + data)

            def on_close(event):
                self.connected -= 1
                server.close(event.code, "Durable Object is closing WebSocket")

            server.addEventListener("message", on_message)
            server.addEventListener("close", on_close)
            return Response(None, status=101, web_socket=client)
        if path.endswith("/getCurrentConnections"):
            n = self.connected
            if n == 1:
                return Response(
                    "There is 1 WebSocket client connected to this Durable Object instance."
                )
            return Response(
                f"There are {n} WebSocket clients connected to this Durable Object instance."
            )
        return Response("hostile app: /websocket /getCurrentConnections /slow /version /stats")
