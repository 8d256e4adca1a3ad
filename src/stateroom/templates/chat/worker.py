"""Chat rooms over WebSockets: connect to /room/<room>?name=<you>, send text.

Each room is a Durable Object holding its sockets with the Hibernation API, so an idle
room leaves memory while its sockets stay open. A joiner gets the room's recent history
first, then everyone's messages as "<name>: <text>".
"""

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint

HISTORY = 50


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("://", 1)[1].partition("/")[2]
        room = path.removeprefix("room/").partition("?")[0]
        if not path.startswith("room/") or not room:
            return Response("connect a WebSocket to /room/<room>?name=<you>", status=404)
        return await self.env.ROOMS.getByName(room).fetch(request)


class Room(DurableObject):
    async def fetch(self, request):
        if request.headers.get("Upgrade") != "websocket":
            return Response("expected a WebSocket", status=426)
        query = request.url.partition("?")[2]
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        server.serializeAttachment({"name": params.get("name", "anonymous")})
        for line in await self.ctx.storage.get("history") or []:
            server.send(line)  # sent before the 101: the joiner gets them first
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        line = f"{ws.deserializeAttachment()['name']}: {message}"
        history = (await self.ctx.storage.get("history") or [])[-(HISTORY - 1) :]
        await self.ctx.storage.put("history", [*history, line])
        for other in self.ctx.getWebSockets():
            other.send(line)

    async def webSocketClose(self, ws, code, reason, wasClean):
        ws.close(code, "bye")
