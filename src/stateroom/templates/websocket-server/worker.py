"""Cloudflare's "WebSocket server using Durable Objects and Workers", ported line by line.

The JavaScript original is reference/websocket-server.js. One deliberate
difference: a binary message is echoed as a binary frame holding the prefix
followed by the received bytes, where JavaScript would print "[object ArrayBuffer]"
(a Python f-string would print "b'...'", which helps nobody).
"""

from stateroom import DurableObject, Request, Response, WebSocketPair, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        id = self.env.WEBSOCKET_SERVER.idFromName("foo")
        stub = self.env.WEBSOCKET_SERVER.get(id)
        return await stub.fetch(request)


class WebSocketServer(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.state = ctx
        self.currentlyConnectedWebSockets = 0

    async def fetch(self, request: Request) -> Response:
        if request.url.endswith("/websocket"):
            upgrade_header = request.headers.get("Upgrade")
            if not upgrade_header or upgrade_header != "websocket":
                return Response("Durable Object expected Upgrade: websocket", status=426)
            client, server = WebSocketPair()
            server.accept()
            self.currentlyConnectedWebSockets += 1

            def on_message(event):
                if isinstance(event.data, str):
                    server.send(f"[Durable Object]: {event.data}")
                else:
                    server.send(b"[Durable Object]: " + event.data)

            def on_close(cls):
                self.currentlyConnectedWebSockets -= 1
                server.close(cls.code, "Durable Object is closing WebSocket")

            server.addEventListener("message", on_message)
            server.addEventListener("close", on_close)
            return Response(None, status=101, web_socket=client)
        elif request.url.endswith("/getCurrentConnections"):
            if self.currentlyConnectedWebSockets == 1:
                return Response(
                    f"There is {self.currentlyConnectedWebSockets} WebSocket client "
                    "connected to this Durable Object instance."
                )
            return Response(
                f"There are {self.currentlyConnectedWebSockets} WebSocket clients "
                "connected to this Durable Object instance."
            )
        return Response("""
This Durable Object supports the following endpoints:
  /websocket
    - Creates a WebSocket connection. Any messages sent to it are echoed with a prefix.
  /getCurrentConnections
    - A regular HTTP GET endpoint that returns the number of currently connected WebSocket clients.
""")
