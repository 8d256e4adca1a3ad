"""A test app for Durable Object storage, gates and alarms."""

import asyncio
import json
import time

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint

UNDO = {}  # undo bookmarks: the request that restores ends in ctx.abort()


def parse(request):
    rest = request.url.split("://", 1)[1].partition("/")[2]
    path, _, query = rest.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return path.split("/"), params


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts, params = parse(request)
        ns = self.env.LEGACY if parts[0] == "legacy" else self.env.STORE
        return await ns.getByName(params.get("obj", "main")).fetch(request)


class Store(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.loaded = "not yet"
        # Cloudflare's pattern: load state in the constructor, without awaiting; no event
        # may be delivered before it is done.
        ctx.blockConcurrencyWhile(self.load)

    async def load(self):
        await asyncio.sleep(0.02)
        self.loaded = await self.ctx.storage.get("n")

    async def fetch(self, request):
        parts, p = parse(request)
        storage = self.ctx.storage
        action = parts[1] if len(parts) > 1 else ""
        if action == "put":
            await storage.put(p["k"], p["v"])
            return Response("ok")
        if action == "get":
            return Response(json.dumps(await storage.get(p["k"])))
        if action == "keys":
            return Response(json.dumps(list((await storage.list()).keys())))
        if action == "incr":
            n = (await storage.get("n")) or 0
            await storage.put("n", n + 1)
            return Response(str(n + 1))
        if action == "txn-incr":

            async def txn(t):
                n = (await t.get("n")) or 0
                await asyncio.sleep(0.005)  # really suspends: only the input gate keeps order
                await t.put("n", n + 1)
                return n + 1

            return Response(str(await storage.transaction(txn)))
        if action == "block-incr":

            async def block():
                n = (await storage.get("n")) or 0
                await asyncio.sleep(0.005)
                await storage.put("n", n + 1)
                return n + 1

            return Response(str(await self.ctx.blockConcurrencyWhile(block)))
        if action == "sql":
            sql = storage.sql
            sql.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, name TEXT)")
            sql.exec("INSERT INTO t(name) VALUES (?)", p.get("name", "x"))
            rows = sql.exec("SELECT id, name FROM t ORDER BY id").toArray()
            return Response(json.dumps(rows))
        if action == "badcommit":
            # A deferred foreign key makes COMMIT itself fail: the write is lost, so the
            # response produced after it must never be released.
            sql = storage.sql
            sql.exec("CREATE TABLE IF NOT EXISTS p(id INTEGER PRIMARY KEY)")
            sql.exec(
                "CREATE TABLE IF NOT EXISTS c(pid INTEGER REFERENCES p(id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
            await storage.put("before-bad-commit", True)
            sql.exec("INSERT INTO c VALUES (42)")
            return Response("released before commit")
        if action == "alarm-set":
            await storage.put("fail", int(p.get("fail", "0")))
            await storage.put("again", int(p.get("again", "0")))
            await storage.setAlarm(int(time.time() * 1000) + int(p["ms"]))
            return Response("set")
        if action == "loaded":
            return Response(json.dumps(self.loaded))
        if action == "id":
            return Response(self.ctx.id.toString())
        if action == "alarm-get":
            return Response(json.dumps(await storage.getAlarm()))
        if action == "alarm-log":
            return Response(json.dumps((await storage.get("fired")) or []))
        if action == "bookmark":
            try:
                if "ms" in p:
                    return Response(await storage.getBookmarkForTime(int(p["ms"])))
                return Response(await storage.getCurrentBookmark())
            except Exception as exc:
                return Response(f"{type(exc).__name__}: {exc}", status=500)
        if action == "restore":
            UNDO[self.ctx.id.toString()] = await storage.onNextSessionRestoreBookmark(p["b"])
            self.ctx.abort("restoring")  # the restore takes effect when the object restarts
        if action == "undo":
            return Response(UNDO.get(self.ctx.id.toString(), ""))
        if action == "alarm-name":
            return Response(json.dumps(await storage.get("alarm-name")))
        if action == "ws":
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server)
            return Response(None, status=101, web_socket=client)
        return Response("?", status=404)

    async def alarm(self, info):
        storage = self.ctx.storage
        fired = (await storage.get("fired")) or []
        entry = {"retry": info.retryCount, "isRetry": info.isRetry, "get": await storage.getAlarm()}
        again = (await storage.get("again")) or 0
        if again:  # set the next alarm from inside this one
            await storage.put("again", 0)
            await storage.setAlarm(int(time.time() * 1000) + again)
            entry["getAfterSet"] = await storage.getAlarm() is not None
        fired.append(entry)
        await storage.put("fired", fired)
        await storage.put("alarm-name", self.ctx.id.name)
        fail = (await storage.get("fail")) or 0
        if fail > 0:
            await self.ctx.storage.put("fail", fail - 1)
            raise RuntimeError("alarm failed on purpose")

    async def webSocketMessage(self, ws, message):
        n = (await self.ctx.storage.get("ws-count")) or 0
        await self.ctx.storage.put("ws-count", n + 1)
        if message == "bad":
            sql = self.ctx.storage.sql
            sql.exec("CREATE TABLE IF NOT EXISTS p(id INTEGER PRIMARY KEY)")
            sql.exec(
                "CREATE TABLE IF NOT EXISTS c(pid INTEGER REFERENCES p(id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
            sql.exec("INSERT INTO c VALUES (42)")  # COMMIT will fail
        ws.send(f"{message}:{n + 1}")


class Legacy(DurableObject):
    async def fetch(self, request):
        await self.ctx.storage.put("k", 1)
        try:
            self.ctx.storage.sql.exec("SELECT 1")
        except RuntimeError as exc:
            return Response(str(exc))
        return Response("sql worked")
