"""Streaming bodies, read by tests/test_streams.py over real sockets.

The same routes answer in the Worker (``/w/...``) and, through ``stub.fetch()``, in a
Durable Object (``/o/...``); each side keeps its own state:

- ``upload``: reads ``request.body`` chunk by chunk; answers the byte and chunk count.
- ``slow-upload``: reads one chunk, then waits for ``release`` before reading the rest.
- ``held``: once the body ``slow-upload`` holds has reached its high-water mark (the
  server stopped reading the socket), how many bytes it holds.
- ``echo``: answers with the request's own body stream.
- ``text``: ``await request.text()`` (the whole body, buffered as asked).
- ``sse``: server-sent events: one event now, one more per ``tick``; ``sse-closed``
  answers once the generator has been closed (the client went away).
- ``stored`` (object only): a stream whose chunks are made after storage writes.
"""

import asyncio
import json

from stateroom import DurableObject, Response, WorkerEntrypoint

STATE = {}


def state(side):
    if side not in STATE:
        STATE[side] = {
            "release": asyncio.Event(),
            "tick": asyncio.Event(),
            "sse_closed": asyncio.Event(),
            "stream": None,
        }
    return STATE[side]


async def handle(side, route, request):
    s = state(side)
    if route == "upload":
        total = chunks = 0
        async for chunk in request.body:
            total += len(chunk)
            chunks += 1
        return Response.json({"total": total, "chunks": chunks})
    if route == "slow-upload":
        stream = s["stream"] = request.body
        total = len(await stream.read())
        await s["release"].wait()
        async for chunk in stream:
            total += len(chunk)
        return Response.json({"total": total})
    if route == "held":
        for _ in range(2000):  # until the server has stopped reading (an event, polled)
            stream = s["stream"]
            if stream is not None and stream._full:
                return Response.json({"held": stream._held})
            await asyncio.sleep(0.005)
        return Response("never full", status=500)
    if route == "release":
        s["release"].set()
        return Response("released")
    if route == "echo":
        return Response(request.body, headers={"Content-Type": "application/octet-stream"})
    if route == "text":
        return Response(str(len(await request.text())))
    if route == "sse":
        s["sse_closed"].clear()

        async def events():
            try:
                n = 0
                while True:
                    yield f"data: {side} {n}\n\n"
                    n += 1
                    await s["tick"].wait()
                    s["tick"].clear()
            finally:
                s["sse_closed"].set()

        return Response(events(), headers={"Content-Type": "text/event-stream"})
    if route == "tick":
        s["tick"].set()
        return Response("ticked")
    if route == "sse-closed":
        await asyncio.wait_for(s["sse_closed"].wait(), 10)
        return Response("closed")
    return None


def route_of(url):
    path = url.split("://", 1)[-1].split("/", 1)[-1].partition("?")[0]
    side, _, route = path.partition("/")
    return side, route


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        side, route = route_of(request.url)
        if side == "o":
            return await self.env.STREAMER.getByName("one").fetch(request)
        answer = await handle("w", route, request)
        return answer or Response("not found", status=404)


class Streamer(DurableObject):
    async def fetch(self, request):
        _, route = route_of(request.url)
        if route == "stored":
            storage = self.ctx.storage

            async def chunks():
                for i in range(3):
                    storage.put("n", i)  # not awaited: the chunk after it waits for it
                    yield json.dumps({"i": i, "stored": await storage.get("n")}) + "\n"

            return Response(chunks(), headers={"Content-Type": "application/x-ndjson"})
        answer = await handle("o", route, request)
        return answer or Response("not found", status=404)
