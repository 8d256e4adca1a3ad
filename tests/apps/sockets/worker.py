"""The WebSocket surface and outbound connections, for tests/test_sockets.py.

- ``/ws`` (``/ws-hib`` with ``ctx.acceptWebSocket``): a socket whose 101 chooses the
  client's last offered subprotocol; the message ``props`` is answered with the server
  end's ``protocol``, ``extensions`` and ``url`` (and what they read in ``fetch``,
  before the 101 left).
- ``/t/...``: targets the object's outbound requests reach (in the Worker): ``echo``
  (method, body and ``X-Test`` back), ``redirect`` (303 to ``echo``), ``hold`` (answers
  once ``/t/release`` is called), ``stream`` (a streamed body), ``ws`` (a WebSocket
  echo with a prefix).
- ``/fetch?to=PATH`` (``POST`` sends its body on), ``/fetch-held``, ``/ping``,
  ``/ws-out``: the object's outbound ``fetch()`` and WebSocket, to ``/t/...`` on this
  same server.
"""

import asyncio
import json

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint, fetch

HELD = {"release": None}


def props(ws):
    return {"protocol": ws.protocol, "extensions": ws.extensions, "url": ws.url}


def chosen(request):
    offered = request.headers.get("Sec-WebSocket-Protocol")
    if offered:
        return {"Sec-WebSocket-Protocol": offered.split(",")[-1].strip()}
    return {}


def origin(request):
    return request.url.split("/", 3)[2]


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3]
        if path.startswith("t/"):
            return await self.target(path[2:].partition("?")[0], request)
        return await self.env.SOCK.getByName("one").fetch(request)

    async def target(self, route, request):
        if route == "echo":
            body = await request.text()
            return Response.json(
                {"method": request.method, "body": body, "x": request.headers.get("X-Test")},
                headers={"X-Reply": "yes"},
            )
        if route == "redirect":
            return Response(None, status=303, headers={"Location": "/t/echo"})
        if route == "hold":
            HELD["release"] = asyncio.Event()
            await HELD["release"].wait()
            return Response("held")
        if route == "release":
            while HELD["release"] is None:  # until /t/hold has arrived (polled, an event)
                await asyncio.sleep(0.005)
            HELD["release"].set()
            HELD["release"] = None
            return Response("released")
        if route == "stream":

            async def chunks():
                for i in range(5):
                    yield f"part {i};"

            return Response(chunks())
        if route == "ws":
            client, server = WebSocketPair()
            server.accept()
            server.addEventListener("message", lambda e: server.send(f"echo: {e.data}"))
            return Response(None, status=101, web_socket=client, headers=chosen(request))
        return Response("no target", status=404)


class Sock(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.before = None

    async def fetch(self, request):
        path, _, query = request.url.split("/", 3)[3].partition("?")
        base = f"http://{origin(request)}"
        if path == "fetch":
            to = query.removeprefix("to=")
            if request.method == "POST":
                reply = await fetch(
                    base + to, method="POST", body=request.body, headers={"X-Test": "sent"}
                )
            else:
                reply = await fetch(base + to, headers={"X-Test": "sent"})
            return Response.json(
                {
                    "status": reply.status,
                    "body": await reply.text(),
                    "reply_header": reply.headers.get("X-Reply"),
                    "url": reply.url,
                    "redirected": reply.redirected,
                }
            )
        if path == "fetch-held":
            reply = await fetch(base + "/t/hold")
            return Response(await reply.text())
        if path == "ping":
            return Response("pong")
        if path == "fetch-failed":
            try:
                await fetch("http://127.0.0.1:1/nothing")
            except OSError as exc:
                return Response(f"OSError: {exc}")
            return Response("no error")
        if path == "ws-out":
            reply = await fetch(
                base + "/t/ws", headers={"Upgrade": "websocket", "Sec-WebSocket-Protocol": "p1"}
            )
            ws = reply.webSocket
            got = asyncio.get_running_loop().create_future()
            ws.accept()
            ws.addEventListener("message", lambda e: got.done() or got.set_result(e.data))
            ws.send("hello")
            answer = await got
            ws.close(1000, "done")
            return Response.json(
                {"status": reply.status, "answer": answer, "url": ws.url, "protocol": ws.protocol}
            )
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
