"""``/spawn`` starts a plain ``asyncio.create_task`` in the object that runs until
``/finish``; ``/constructed`` says how many times the object's constructor ran."""

import asyncio

from stateroom import DurableObject, Response, WorkerEntrypoint

CONSTRUCTED = [0]
FINISH = {}
DONE = []


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3]
        if path == "finish":
            FINISH["event"].set()
            return Response("finishing")
        if path == "constructed":
            return Response(str(CONSTRUCTED[0]))
        return await self.env.WORKER.getByName("one").fetch(request)


class Busy(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        CONSTRUCTED[0] += 1
        self.task = None

    async def fetch(self, request):
        event = FINISH["event"] = asyncio.Event()

        async def work():
            await event.wait()
            DONE.append("done")

        self.task = asyncio.create_task(work())  # not awaited, not waitUntil
        return Response("spawned")
