"""Paths the other test apps leave untested: waitUntil, webSocketError, the hibernatable
event timeout, the auto-response getter, the socket cap and the blockConcurrencyWhile limit.

Work that must outlast a response waits on a *gate* (``/open/NAME`` opens it), so the test
decides when it ends instead of sleeping. ``/events`` lists what happened, in order.
"""

import asyncio
import json
import time
from collections import defaultdict

from stateroom import (
    DurableObject,
    Response,
    WebSocketPair,
    WebSocketRequestResponsePair,
    WorkerEntrypoint,
)

EVENTS = []
GATES = defaultdict(asyncio.Event)
CONSTRUCTED = defaultdict(int)


def _parts(url):
    rest = url.split("://", 1)[-1]
    path, _, query = ("/" + rest.split("/", 1)[1] if "/" in rest else "/").partition("?")
    return [p for p in path.split("/") if p], query


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts, _ = _parts(request.url)
        head = parts[0] if parts else ""
        if head == "events":
            return Response(json.dumps(EVENTS))
        if head == "open":
            GATES[parts[1]].set()
            return Response("opened")
        if head == "worker-wait":
            # The response leaves now; the Worker's waitUntil work finishes later.
            async def later():
                await GATES["worker"].wait()
                EVENTS.append("worker waitUntil done")

            self.ctx.waitUntil(later())
            EVENTS.append("worker responded")
            return Response("responded")
        if head == "slow":
            return await self.env.SLOW.getByName(parts[1]).fetch(request)
        return await self.env.OBJ.getByName(parts[1]).fetch(request)


class Obj(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.name = None
        CONSTRUCTED[ctx.id.toString()] += 1

    async def fetch(self, request):
        parts, query = _parts(request.url)
        self.name = parts[1]
        action = parts[2] if len(parts) > 2 else ""
        if action == "constructed":
            return Response(str(CONSTRUCTED[self.ctx.id.toString()]))
        if action == "wait":
            # waitUntil keeps the object in memory until the work is done.
            async def later():
                await GATES[self.name].wait()
                EVENTS.append(f"{self.name} waitUntil done")

            self.ctx.waitUntil(later())
            return Response("waiting")
        if action == "ws":
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server)
            return Response(None, status=101, web_socket=client)
        if action == "count":
            return Response(str(len(self.ctx.getWebSockets())))
        if action == "timeout":
            value = int(query) if query else None
            self.ctx.setHibernatableWebSocketEventTimeout(value)
            return Response(str(self.ctx.getHibernatableWebSocketEventTimeout()))
        if action == "auto":
            if query == "clear":
                self.ctx.setWebSocketAutoResponse()
            else:
                self.ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))
            pair = self.ctx.getWebSocketAutoResponse()
            return Response("none" if pair is None else f"{pair.request}->{pair.response}")
        if action == "unawaited":
            # Storage calls take effect when made (as on Cloudflare), awaited or not.
            self.ctx.storage.put("k", query)
            self.ctx.storage.setAlarm(int(time.time() * 1000) + 50)
            return Response("written")
        if action == "read":
            return Response(str(await self.ctx.storage.get("k")))
        if action == "fail-after-write":
            # Storage open (its output gate live), then a blockConcurrencyWhile() callback
            # that raises: the object is reset, once.
            await self.ctx.storage.put("k", "before the reset")

            async def boom():
                raise RuntimeError("boom in blockConcurrencyWhile")

            await self.ctx.blockConcurrencyWhile(boom)
            return Response("not reached")
        if action == "cap":
            accepted = 0
            try:
                for _ in range(int(query)):
                    _, server = WebSocketPair()
                    self.ctx.acceptWebSocket(server)
                    accepted += 1
            except RuntimeError as exc:
                return Response(f"{accepted} accepted; then: {exc}")
            return Response(f"{accepted} accepted")
        return Response("?", status=404)

    async def alarm(self):
        EVENTS.append(f"{self.name or self.ctx.id.name} alarm")

    async def webSocketMessage(self, ws, message):
        if message == "hang":
            EVENTS.append(f"{self.name} hang started")
            try:
                await asyncio.Event().wait()  # never set: only the event timeout ends it
            finally:
                EVENTS.append(f"{self.name} hang ended")
        elif message == "close-me":
            ws.close(1000, "closing")  # CLOSING until the client answers
        else:
            ws.send(f"echo:{message}")

    async def webSocketError(self, ws, error):
        EVENTS.append(f"{self.name} webSocketError: {type(error).__name__}: {error}")

    async def webSocketClose(self, ws, code, reason, wasClean):
        EVENTS.append(f"{self.name} webSocketClose {code} {wasClean}")


class SlowStart(DurableObject):
    """Its constructor blocks events until a gate opens (or the time limit resets it)."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        CONSTRUCTED["slow"] += 1
        EVENTS.append("slow constructed")
        self.ready = False

        async def load():
            await GATES["slow"].wait()
            self.ready = True

        ctx.blockConcurrencyWhile(load)

    async def fetch(self, request):
        return Response(f"ready={self.ready} constructed={CONSTRUCTED['slow']}")
