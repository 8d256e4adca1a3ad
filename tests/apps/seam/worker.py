"""A test app for the runtime's event order, gate, eviction, reset and hibernation wake.

tests/test_harness.py drives it twice: in process through the event interface
(stateroom.testing) and over real sockets. /<name>/<action> reaches object <name>.
"""

import asyncio
import itertools
import json

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint

GENERATION = itertools.count(1)


def _parts(request):
    path = request.url.split("://", 1)[1].partition("/")[2].partition("?")[0]
    return path.split("/")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.OBJ.getByName(_parts(request)[0]).fetch(request)


class Obj(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.generation = next(GENERATION)
        self.log = []

    async def fetch(self, request):
        action = _parts(request)[1]
        if action == "generation":
            return Response(str(self.generation))
        if action == "log":
            return Response(json.dumps(self.log))
        if action == "fast":
            self.log.append("fast")
            return Response("fast")
        if action == "fail":

            async def fails():
                raise ValueError("cannot load")

            try:
                await self.ctx.blockConcurrencyWhile(fails)
            except ValueError:
                return Response("failed", status=500)
        client, server = WebSocketPair()
        if action == "hws":
            self.ctx.acceptWebSocket(server)
        else:
            server.accept()
            server.addEventListener("message", lambda event: self.on_message(server, event.data))
        return Response(None, status=101, web_socket=client)

    def on_message(self, ws, message):
        if message == "gate":
            self.log.append("gate-start")

            async def hold():
                ws.send("gate closed")
                await asyncio.sleep(0.1)
                self.log.append("gate-end")

            self.ctx.blockConcurrencyWhile(hold)
            return
        self.log.append(message)
        ws.send(f"{self.generation}:{message}")

    async def webSocketMessage(self, ws, message):
        ws.send(f"{self.generation}:{message}")

    async def webSocketClose(self, ws, code, reason, wasClean):
        ws.close(code, "bye")
