"""A chat room as a new user writes one: the joiner gets the history and a "joined" line.

Everything the object sends while handling the upgrade request leaves before its 101
response: the history replayed to the joiner, and the "joined" broadcast, which reaches
the joiner too. reference/chatroom.js is the same app for workerd (the parity tests).

    /ws?room=R&name=N&mode=accept|hibernate[&store=1]

``mode`` picks ``server.accept()`` or ``ctx.acceptWebSocket()``; ``store=1`` writes
storage before accepting, so the first sends wait on the output gate; a new ``room``
is a cold object.
"""

from urllib.parse import parse_qs, urlsplit

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint


def _params(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        room = _params(request.url).get("room", "lobby")
        return await self.env.ROOM.getByName(room).fetch(request)


class Room(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.history = []
        self.listeners = []

    async def fetch(self, request):
        params = _params(request.url)
        name = params.get("name", "anon")
        if params.get("store") == "1":
            await self.ctx.storage.put("last-joined", name)
        client, server = WebSocketPair()
        if params.get("mode") == "hibernate":
            self.ctx.acceptWebSocket(server)
            server.serializeAttachment(name)
        else:
            server.accept()
            self.listeners.append(server)

            def on_message(event, server=server, name=name):
                self.broadcast(f"{name}: {event.data}")

            def on_close(event, server=server):
                self.listeners.remove(server)
                server.close(event.code, "bye")

            server.addEventListener("message", on_message)
            server.addEventListener("close", on_close)
        for line in self.history:
            server.send(f"history: {line}")
        line = f"joined: {name}"
        self.history.append(line)
        self.broadcast(line)
        return Response(None, status=101, web_socket=client)

    def broadcast(self, line):
        for ws in self.listeners:
            ws.send(line)
        for ws in self.ctx.getWebSockets():
            ws.send(line)

    async def webSocketMessage(self, ws, message):
        self.broadcast(f"{ws.deserializeAttachment()}: {message}")

    async def webSocketClose(self, ws, code, reason, wasClean):
        ws.close(code, "bye")
