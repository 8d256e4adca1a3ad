"""The API calls of Cloudflare's "Build a WebSocket server with WebSocket Hibernation"
example (its Python tab), in our own words: sessions rebuilt in the constructor from
ctx.getWebSockets() and socket attachments, an auto-response made with
js.WebSocketRequestResponsePair.new, and a broadcast from webSocketMessage."""

import logging
import uuid

from js import WebSocketPair, WebSocketRequestResponsePair
from workers import DurableObject, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/websocket"):
            if request.headers.get("Upgrade") != "websocket":
                return Response("Worker expected Upgrade: websocket", status=426)
            if request.method != "GET":
                return Response("Worker expected GET method", status=400)
            return await self.env.WEBSOCKET_HIBERNATION_SERVER.getByName("foo").fetch(request)
        return Response(
            "Supported endpoints:\n/websocket: Expects a WebSocket upgrade request",
            headers={"Content-Type": "text/plain"},
        )


class WebSocketHibernationServer(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sessions = {}
        for ws in self.ctx.getWebSockets():
            session_id = ws.deserializeAttachment()
            if session_id:
                self.sessions[session_id] = ws
        logging.getLogger("docs-hibernation").info(
            "constructed with %d sessions", len(self.sessions)
        )
        self.ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair.new("ping", "pong"))

    async def fetch(self, request):
        client, server = WebSocketPair.new().object_values()
        self.ctx.acceptWebSocket(server)
        session_id = str(uuid.uuid4())
        server.serializeAttachment(session_id)
        self.sessions[session_id] = server
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        session_id = ws.deserializeAttachment()
        total = len(self.sessions)
        ws.send(f"{message} from {session_id} to: the sender. Total: {total}")
        for other in self.sessions.values():
            if other != ws:
                other.send(f"{message} from {session_id} to: the others. Total: {total}")

    async def webSocketClose(self, ws, code, reason, wasClean):
        ws.close(code, reason)
        self.sessions.pop(ws.deserializeAttachment(), None)
