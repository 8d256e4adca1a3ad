"""The WebSocket server example on the WebSocket Hibernation API.

Behaves like examples/websocket-server to a client, but its sockets stay open
while the object is evicted from memory: the count is read from the runtime
(``len(ctx.getWebSockets())``), not from a field that eviction would reset.
"""

from stateroom import DurableObject, Request, Response, WebSocketPair, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        id = self.env.WEBSOCKET_HIBERNATION_SERVER.idFromName("foo")
        stub = self.env.WEBSOCKET_HIBERNATION_SERVER.get(id)
        return await stub.fetch(request)


class WebSocketHibernationServer(DurableObject):
    async def fetch(self, request: Request) -> Response:
        if request.url.endswith("/websocket"):
            upgrade_header = request.headers.get("Upgrade")
            if not upgrade_header or upgrade_header != "websocket":
                return Response("Durable Object expected Upgrade: websocket", status=426)
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server)
            return Response(None, status=101, web_socket=client)
        elif request.url.endswith("/getCurrentConnections"):
            count = len(self.ctx.getWebSockets())
            if count == 1:
                return Response(
                    f"There is {count} WebSocket client connected to this Durable Object instance."
                )
            return Response(
                f"There are {count} WebSocket clients connected to this Durable Object instance."
            )
        return Response("""
This Durable Object supports the following endpoints:
  /websocket
    - Creates a WebSocket connection. Any messages sent to it are echoed with a prefix.
  /getCurrentConnections
    - A regular HTTP GET endpoint that returns the number of currently connected WebSocket clients.
""")

    async def webSocketMessage(self, ws, message):
        if isinstance(message, str):
            ws.send(f"[Durable Object]: {message}")
        else:
            ws.send(b"[Durable Object]: " + message)

    async def webSocketClose(self, ws, code, reason, wasClean):
        ws.close(code, "Durable Object is closing WebSocket")
