"""Acknowledged writes for bench/storage.py, driven by bench/loadgen over WebSockets.

The Worker holds the client's WebSocket itself. Each message is written by an object
(``await ctx.storage.put``, over RPC), and echoed with the load generator's prefix once
the RPC returns: an RPC result leaves the object only after its writes are durable, so
every echo the generator counts is an acknowledged write.

- ``/writes?objects=N``: message i goes to object ``o-(i mod N)``;
- ``/new``: every message goes to an object never used before (its first write);
- ``/echo``: an object echoes without storage (the latency probe);
- ``/count``: how many objects ``/new`` created;
- ``/prefill?objects=N``: one write to each of ``o-0`` .. ``o-(N-1)``, so that a measured
  window sees steady state, not object creation.
"""

import asyncio
import itertools

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint

PREFIX = "[Durable Object]: "
SENT = itertools.count()
CREATED = itertools.count()
COUNT = {"new": 0}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path, _, query = request.url.split("://", 1)[1].partition("/")[2].partition("?")
        if path == "count":
            return Response(str(COUNT["new"]))
        if path == "prefill":
            objects = int(query.partition("=")[2])
            for start in range(0, objects, 64):
                names = (f"o-{i}" for i in range(start, min(objects, start + 64)))
                await asyncio.gather(*(self.env.OBJ.getByName(n).write("x") for n in names))
            return Response(f"prefilled {objects}")
        if path == "echo":
            return await self.env.ECHO.getByName("echo").fetch(request)
        if path == "new":
            names = (f"n-{next(CREATED)}" for _ in itertools.repeat(None))
        elif path == "writes":
            objects = int(query.partition("=")[2] or "1")
            names = (f"o-{next(SENT) % objects}" for _ in itertools.repeat(None))
        else:
            return Response("/writes?objects=N /new /echo /count", status=404)
        namespace = self.env.OBJ
        client, server = WebSocketPair()
        server.accept()
        counting = path == "new"

        async def on_message(event):
            name = next(names)
            await namespace.getByName(name).write(event.data)
            if counting:
                COUNT["new"] += 1
            server.send(PREFIX + event.data)

        server.addEventListener("message", on_message)
        return Response(None, status=101, web_socket=client)


class Obj(DurableObject):
    async def write(self, value):
        await self.ctx.storage.put("k", value)
        return True


class Echo(DurableObject):
    async def fetch(self, request):
        client, server = WebSocketPair()
        server.accept()
        server.addEventListener("message", lambda event: server.send(PREFIX + event.data))
        return Response(None, status=101, web_socket=client)
