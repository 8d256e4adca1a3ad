"""A test app for metrics, the CPU watchdog and the dashboard: rooms by name.

/room/NAME/ws         a hibernatable WebSocket (tag "room:NAME", attachment {"user": ?user}):
                      echoes; "spin S" spins first; "instance" answers which instance runs
/room/NAME/put?k=&v=  a storage write
/room/NAME/note?text= a row in the SQL table notes
/room/NAME/spin?s=    holds the event loop for s seconds (a CPU loop)
/room/NAME/alarm?ms=  sets an alarm ms from now (alarm() raises while ?fail=1 was given)
/room/NAME/instance   which instance answers (a number per construction)
/room/NAME/ping       an ordinary request
/spin?s=              holds the event loop in the Worker itself
"""

import itertools
import time

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint

instances = itertools.count(1)


def parse(request):
    rest = request.url.split("://", 1)[1].partition("/")[2]
    path, _, query = rest.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return path.split("/"), params


def spin(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts, params = parse(request)
        if parts[0] == "spin":
            spin(float(params.get("s", "1")))
            return Response("the Worker spun")
        if parts[0] == "room" and len(parts) > 2:
            return await self.env.ROOMS.getByName(parts[1]).fetch(request)
        return Response("not found", status=404)


class Room(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.instance = next(instances)

    async def fetch(self, request):
        parts, p = parse(request)
        name, action = parts[1], parts[2]
        if action == "ws":
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server, [f"room:{name}"])
            server.serializeAttachment({"user": p.get("user", "anon")})
            return Response(None, status=101, web_socket=client)
        if action == "put":
            await self.ctx.storage.put(p["k"], p["v"])
            return Response("ok")
        if action == "spin":
            spin(float(p.get("s", "1")))
            return Response("spun")
        if action == "alarm":
            await self.ctx.storage.put("fail", p.get("fail") == "1")
            await self.ctx.storage.setAlarm(time.time() * 1000 + float(p.get("ms", "0")))
            return Response("set")
        if action == "note":
            sql = self.ctx.storage.sql
            sql.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)")
            sql.exec("INSERT INTO notes (text) VALUES (?)", p.get("text", ""))
            return Response("noted")
        if action == "instance":
            return Response(str(self.instance))
        return Response("pong")

    async def alarm(self, info=None):
        if await self.ctx.storage.get("fail"):
            raise RuntimeError("alarm failed on purpose")
        await self.ctx.storage.put("alarmed", True)

    async def webSocketMessage(self, ws, message):
        if message.startswith("spin "):
            spin(float(message[5:]))
        elif message == "instance":
            ws.send(f"instance {self.instance}")
            return
        ws.send(f"echo: {message}")

    async def webSocketClose(self, ws, code, reason, wasClean):
        ws.close(code, "bye")
