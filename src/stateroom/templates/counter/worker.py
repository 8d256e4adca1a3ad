"""A counter per name: GET /<name> reads it, POST /<name> adds one.

Each name is its own Durable Object: one live instance, its events one at a time, its
count in its own storage. Run it with `stateroom dev`, test it with `pytest`.
"""

from stateroom import DurableObject, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        name = request.url.split("://", 1)[1].partition("/")[2].partition("?")[0] or "default"
        counter = self.env.COUNTERS.getByName(name)
        if request.method == "POST":
            return Response(str(await counter.increment()))
        return Response(str(await counter.value()))


class Counter(DurableObject):
    async def value(self):
        return await self.ctx.storage.get("count") or 0

    async def increment(self, by=1):
        count = await self.value() + by
        await self.ctx.storage.put("count", count)  # durable before the answer leaves
        return count
