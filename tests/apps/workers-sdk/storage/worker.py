"""The Durable Object API calls of workers-py's bindings test (test_do.py and
worker_durable_object.py), in our own words, driven by a ``test()`` handler.

Storage (KV, SQL cursors, alarms, transactions, sync), ctx.id, blockConcurrencyWhile,
RPC with Python values, namespace ids, stubs, fetch, and ``from workers import env``.
"""

from datetime import datetime, timedelta
from urllib.parse import urlparse

from workers import DurableObject, Response, WorkerEntrypoint
from workers import env as top_level_env


class TestDurableObject(DurableObject):
    async def fetch(self, request):
        if urlparse(request.url).path == "/ping":
            return Response("pong from DO")
        return Response("not found", status=404)

    async def kv(self):
        s = self.ctx.storage
        await s.deleteAll()
        await s.put("key1", "value1")
        assert await s.get("key1") == "value1"
        assert await s.get("missing") is None
        await s.put({"a": 1, "b": 2, "c": 3})
        assert [await s.get(k) for k in "abc"] == [1, 2, 3]
        got = await s.get(["a", "b", "missing"])
        assert got.get("a") == 1 and got.get("b") == 2 and "missing" not in got
        assert await s.delete("key1") is True
        assert await s.get("key1") is None
        assert await s.delete(["a", "b"]) == 2
        await s.deleteAll()
        await s.put({"list:a": 1, "list:b": 2, "list:c": 3, "other": 99})
        listed = await s.list({"prefix": "list:"})
        assert len(listed) == 3 and listed["list:a"] == 1 and listed["list:b"] == 2
        assert len(await s.list({"prefix": "list:", "limit": 2})) == 2
        for name, value in (("str", "hello"), ("int", 42), ("float", 3.14), ("bool", True)):
            await s.put(name, value)
        assert await s.get("str") == "hello" and await s.get("int") == 42
        assert abs(await s.get("float") - 3.14) < 0.001 and await s.get("bool") is True
        await s.deleteAll()
        assert await s.get("str") is None
        return True

    async def sql(self):
        sql = self.ctx.storage.sql
        sql.exec("DROP TABLE IF EXISTS t")
        sql.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, val TEXT)")
        sql.exec("INSERT INTO t (id, val) VALUES (?, ?)", 1, "hello")
        sql.exec("INSERT INTO t (id, val) VALUES (?, ?)", 2, "world")
        rows = sql.exec("SELECT id, val FROM t ORDER BY id").toArray()
        assert len(rows) == 2 and rows[0]["id"] == 1 and rows[1]["val"] == "world"
        assert sql.exec("SELECT val FROM t WHERE id = 1").one()["val"] == "hello"
        cursor = sql.exec("SELECT id, val FROM t")
        assert list(cursor.columnNames) == ["id", "val"]
        assert [row["val"] for row in sql.exec("SELECT val FROM t ORDER BY id")] == [
            "hello",
            "world",
        ]
        write = sql.exec("INSERT INTO t VALUES (3, 'x')")
        write.toArray()
        assert write.rowsWritten >= 1
        read = sql.exec("SELECT * FROM t")
        read.toArray()
        assert read.rowsRead >= 1
        assert sql.databaseSize >= 0
        sql.exec("DROP TABLE t")
        return True

    async def alarms(self):
        s = self.ctx.storage
        await s.deleteAlarm()
        assert await s.getAlarm() is None
        await s.setAlarm(datetime.now() + timedelta(minutes=1))
        assert await s.getAlarm() is not None
        await s.deleteAlarm()
        assert await s.getAlarm() is None
        return True

    async def transaction(self):
        async def body(txn):
            await txn.put("txn_key", "txn_value")
            return await txn.get("txn_key")

        assert await self.ctx.storage.transaction(body) == "txn_value"
        assert await self.ctx.storage.get("txn_key") == "txn_value"
        await self.ctx.storage.put("sync_key", "sync_value")
        await self.ctx.storage.sync()
        assert await self.ctx.storage.get("sync_key") == "sync_value"
        return True

    async def identity(self):
        text = self.ctx.id.toString()
        assert isinstance(text, str) and len(text) == 64
        assert self.ctx.id.name is not None
        return True

    async def block(self):
        async def init():
            await self.ctx.storage.put("bcw_key", "bcw_value")
            return 42

        assert await self.ctx.blockConcurrencyWhile(init) == 42
        assert await self.ctx.storage.get("bcw_key") == "bcw_value"
        return True

    async def echo(self, value):
        return value

    async def wrap(self, data):
        return {"received": data, "added": True}


class Default(WorkerEntrypoint):
    async def test(self, ctrl):
        ns = self.env.TEST_DO
        stub = ns.get(ns.idFromName("test"))
        for check in ("kv", "sql", "alarms", "transaction", "identity", "block"):
            assert await getattr(stub, check)(), check

        assert ns.idFromName("same").toString() == ns.idFromName("same").toString()
        assert ns.idFromName("same").name == "same"
        assert ns.idFromName("same").equals(ns.idFromName("same"))
        assert not ns.idFromName("same").equals(ns.idFromName("other"))
        a, b = ns.newUniqueId(), ns.newUniqueId()
        assert a.toString() != b.toString() and len(a.toString()) == 64
        named = ns.idFromName("roundtrip")
        assert ns.idFromString(named.toString()).toString() == named.toString()

        assert await stub.echo("hello") == "hello"
        assert await stub.echo(42) == 42
        assert await stub.echo(True) is True
        result = await stub.wrap({"key": "value"})
        assert result["received"]["key"] == "value" and result["added"] is True

        top = top_level_env.TEST_DO.get(top_level_env.TEST_DO.idFromName("test"))
        assert (await top.wrap({"k": 1}))["received"] == {"k": 1}

        by_id = ns.get(ns.idFromName("stub_test"))
        assert by_id.id.toString() == ns.idFromName("stub_test").toString()
        assert by_id.name == "stub_test"

        response = await ns.get(ns.idFromName("fetch_test")).fetch("http://fake-host/ping")
        assert await response.text() == "pong from DO"
