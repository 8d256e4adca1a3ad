"""A test app for the WebSocket Hibernation API."""

import json
import logging

from stateroom import (
    DurableObject,
    Response,
    WebSocketPair,
    WebSocketRequestResponsePair,
    WorkerEntrypoint,
)

log = logging.getLogger("stateroom.testapp")
CONSTRUCTED = {"n": 0}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.CHAT.getByName("room").fetch(request)


class Chat(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        CONSTRUCTED["n"] += 1
        log.info("Chat constructed %d", CONSTRUCTED["n"])

    async def fetch(self, request):
        path, _, query = request.url.split("://", 1)[1].partition("/")[2].partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path == "ws":
            client, server = WebSocketPair()
            tags = params["tags"].split(",") if params.get("tags") else []
            self.ctx.acceptWebSocket(server, tags)
            server.serializeAttachment({"name": params.get("name"), "tags": tags})
            return Response(None, status=101, web_socket=client)
        if path == "count":
            return Response(str(len(self.ctx.getWebSockets(params.get("tag")))))
        if path == "auto":
            self.ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))
            return Response("ok")
        if path == "id":
            return Response(self.ctx.id.toString())
        if path == "badtags":
            client, server = WebSocketPair()
            try:
                self.ctx.acceptWebSocket(server, ["t"] * 11)
            except ValueError as exc:
                return Response(str(exc), status=400)
        if path == "bigattachment":
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server)
            try:
                server.serializeAttachment("x" * 20000)
            except ValueError as exc:
                return Response(str(exc), status=400)
        return Response("?", status=404)

    async def webSocketMessage(self, ws, message):
        if message == "whoami":
            ws.send(json.dumps(ws.deserializeAttachment()))
        elif message == "tags":
            ws.send(json.dumps(self.ctx.getTags(ws)))
        elif message == "constructed":
            ws.send(str(CONSTRUCTED["n"]))
        elif message == "autots":
            ts = self.ctx.getWebSocketAutoResponseTimestamp(ws)
            ws.send("none" if ts is None else "set")
        elif isinstance(message, str) and message.startswith("all:"):
            for other in self.ctx.getWebSockets(message[4:] or None):
                other.send(message)
        else:
            ws.send(message)

    async def webSocketClose(self, ws, code, reason, wasClean):
        for other in self.ctx.getWebSockets():
            other.send(f"left:{code}:{ws.deserializeAttachment()['name']}")
