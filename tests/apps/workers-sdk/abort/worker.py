"""The API calls of workers-py's durable-object-abort test, in our own words.

That test also expects the counter in storage to start again from 1 after the abort,
which holds only for workerd's in-memory storage (it is dropped with the aborted actor).
Cloudflare's durable storage keeps it, and so does stateroom's: here recreation is
checked by an instance attribute, and the stored counter is checked to have survived.
"""

from unittest import TestCase

from workers import DurableObject, Response, WorkerEntrypoint

assertRaisesRegex = TestCase().assertRaisesRegex


class AbortingDurableObject(DurableObject):
    def __init__(self, state, env):
        super().__init__(state, env)
        self.storage = state.storage
        self.calls = 0

    async def fetch(self, request):
        return Response("ok")

    async def do_abort(self):
        self.ctx.abort("test abort reason")
        raise AssertionError("abort() returned")

    async def ping(self):
        self.calls += 1
        return f"pong {self.calls}"

    async def get_counter(self):
        value = await self.storage.get("counter")
        if value is None:
            value = 0
        value += 1
        await self.storage.put("counter", value)
        return value


class Default(WorkerEntrypoint):
    async def test(self):
        obj = self.env.ABORTER.get(self.env.ABORTER.idFromName("abort-test"))
        response = await obj.fetch("http://foo.com/")
        assert await response.text() == "ok"
        assert await obj.ping() == "pong 1"
        assert await obj.get_counter() == 1

        with assertRaisesRegex(Exception, "test abort reason"):
            await obj.do_abort()

        obj2 = self.env.ABORTER.get(self.env.ABORTER.idFromName("abort-test"))
        assert await obj2.ping() == "pong 1", "a new instance after abort()"
        response2 = await obj2.fetch("http://foo.com/")
        assert await response2.text() == "ok"
        assert await obj2.get_counter() == 2, "the stored counter survives the abort"
