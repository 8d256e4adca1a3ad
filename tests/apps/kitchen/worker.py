"""A test app exercising the runtime: RPC, ids, event order, eviction, broadcast."""

import asyncio
import itertools
import json
import logging

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint

CONSTRUCTED = itertools.count(1)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = request.url.split("://", 1)[1]
        path = "/" + url.split("/", 1)[1] if "/" in url else "/"
        path, _, query = path.partition("?")
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["vars"]:
            return Response(self.env.GREETING)
        if parts[:1] == ["ids"]:
            ns = self.env.COUNTER
            a = ns.idFromName("a")
            unique = ns.newUniqueId()
            info = {
                "a": a.toString(),
                "a_again": ns.idFromName("a").toString(),
                "b": ns.idFromName("b").toString(),
                "name": a.name,
                "roundtrip": ns.idFromString(a.toString()).equals(a),
                "unique_len": len(unique.toString()),
            }
            try:
                self.env.ROOM.idFromString(a.toString())
                info["cross"] = "accepted"
            except TypeError as exc:
                info["cross"] = str(exc)
            try:
                ns.idFromString("zz")
            except TypeError as exc:
                info["bad"] = str(exc)
            return Response.json(info)
        if parts[:1] == ["counter"]:
            stub = self.env.COUNTER.getByName(parts[1])
            if parts[2] == "rpc":
                value = await stub.increment(int(query or "1"))
                return Response(str(value))
            if parts[2] == "missing":
                try:
                    await stub.nope()
                except TypeError as exc:
                    return Response(str(exc), status=500)
            return await stub.fetch(request)
        if parts[:1] == ["room"]:
            return await self.env.ROOM.getByName(parts[1]).fetch(request)
        return Response("not found", status=404)


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.generation = next(CONSTRUCTED)
        self.value = 0
        self.log = []

    async def increment(self, by=1):
        self.value += by
        return self.value

    async def fetch(self, request):
        action = request.url.rsplit("/", 1)[1]
        if action == "id":
            return Response(self.ctx.id.toString())
        if action == "generation":
            return Response(str(self.generation))
        if action == "slow":
            # Events start in arrival order; an await lets the next one run (as on Cloudflare).
            self.log.append("slow-start")
            await asyncio.sleep(0.05)
            self.log.append("slow-end")
            return Response("slow")
        if action == "fast":
            self.log.append("fast")
            return Response("fast")
        if action == "log":
            return Response(json.dumps(self.log))
        if action == "block":
            logging.getLogger("stateroom.testapp").info("block-start %s", self.ctx.id)
            await self.ctx.blockConcurrencyWhile(lambda: asyncio.sleep(0.5))
            return Response("unblocked")
        if action == "boom":
            raise RuntimeError("boom")
        return Response(str(self.value))


class Room(DurableObject):
    """Broadcast chat room: every message goes to every socket."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sockets = []

    async def fetch(self, request):
        if request.headers.get("Upgrade") != "websocket":
            if request.url.endswith("/id"):
                return Response(self.ctx.id.toString())
            return Response(str(len(self.sockets)))
        client, server = WebSocketPair()
        server.accept()
        self.sockets.append(server)

        async def on_message(event):
            if event.data == "whoami":
                # Which object the runtime thinks is running: in the handler and in a
                # task it starts (which must inherit it, like any contextvar).
                from stateroom.runtime.context import current_host

                here = current_host.get()

                async def later():
                    await asyncio.sleep(0)
                    there = current_host.get()
                    pair = WebSocketPair()
                    server.send(
                        json.dumps(
                            {
                                "handler": here is not None and here.id.hex == self.ctx.id.hex,
                                "task": there is here,
                                "new_pair": pair.server._host is here,
                            }
                        )
                    )

                self.pending = asyncio.get_running_loop().create_task(later())
                return
            for ws in list(self.sockets):
                ws.send(event.data)

        def on_close(event):
            self.sockets.remove(server)

        server.addEventListener("message", on_message)
        server.addEventListener("close", on_close)
        return Response(None, status=101, web_socket=client)
