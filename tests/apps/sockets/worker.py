"""The WebSocket surface and outbound connections, for tests/test_sockets.py.

- ``/ws`` (``/ws-hib`` with ``ctx.acceptWebSocket``): a socket whose 101 chooses the
  client's last offered subprotocol; the message ``props`` is answered with the server
  end's ``protocol``, ``extensions`` and ``url`` (and what they read in ``fetch``,
  before the 101 left).
"""

import json

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint


def props(ws):
    return {"protocol": ws.protocol, "extensions": ws.extensions, "url": ws.url}


def chosen(request):
    offered = request.headers.get("Sec-WebSocket-Protocol")
    if offered:
        return {"Sec-WebSocket-Protocol": offered.split(",")[-1].strip()}
    return {}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.SOCK.getByName("one").fetch(request)


class Sock(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.before = None

    async def fetch(self, request):
        path = request.url.split("/", 3)[3].partition("?")[0]
        if path == "ws":
            client, server = WebSocketPair()
            server.accept()
            before = props(server)

            def on_message(event):
                if event.data == "props":
                    server.send(json.dumps({"now": props(server), "before": before}))

            server.addEventListener("message", on_message)
            return Response(None, status=101, web_socket=client, headers=chosen(request))
        if path == "ws-hib":
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server)
            self.before = props(server)
            return Response(None, status=101, web_socket=client, headers=chosen(request))
        return Response("not found", status=404)

    async def webSocketMessage(self, ws, message):
        if message == "props":
            ws.send(json.dumps({"now": props(ws), "before": self.before}))
