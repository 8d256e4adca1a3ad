from urllib.parse import urlparse

from greeting import shout

from workers import DurableObject, Response, WorkerEntrypoint, env

NAMES = ("GREETING", "SITE", "API_KEY", "DB_PASSWORD", "CACHE", "COUNTER")


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", n)
        return n


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if path == "/vars":
            # The module-level `env` and self.env are the same bindings.
            seen = {name: name in env for name in NAMES}
            assert seen == {name: name in self.env for name in NAMES}
            return Response.json(
                {name: getattr(env, name) for name in NAMES if seen[name] and name != "COUNTER"}
                | {"COUNTER": seen["COUNTER"]}
            )
        if path == "/shout":
            return Response(shout(env.GREETING))
        if path == "/count":
            return Response(str(await self.env.COUNTER.getByName("c").increment()))
        return Response("not found", status=404)
