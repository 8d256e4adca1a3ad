"""The API calls of Cloudflare's "Build a counter" Durable Objects example (its Python
tab), in our own words: RPC methods with default arguments, getByName, storage get/put."""

from urllib.parse import parse_qs, urlparse

from workers import DurableObject, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        name = parse_qs(url.query).get("name", [None])[0]
        if not name:
            return Response("Select a Durable Object with ?name=A")
        stub = self.env.COUNTERS.getByName(name)
        if url.path == "/increment":
            count = await stub.increment()
        elif url.path == "/decrement":
            count = await stub.decrement(amount=2)
        elif url.path in ("", "/"):
            count = await stub.getCounterValue()
        else:
            return Response("Not found", status=404)
        return Response(f"Durable Object '{name}' count: {count}")


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)

    async def getCounterValue(self):
        value = await self.ctx.storage.get("value")
        return value if value is not None else 0

    async def increment(self, amount=1):
        value = (await self.getCounterValue()) + amount
        await self.ctx.storage.put("value", value)
        return value

    async def decrement(self, amount=1):
        value = (await self.getCounterValue()) - amount
        await self.ctx.storage.put("value", value)
        return value
