from workers import Response, WorkerEntrypoint

RUNS = []


class Default(WorkerEntrypoint):
    async def scheduled(self, controller, env, ctx):
        RUNS.append([controller.cron, controller.scheduledTime, env is self.env])

    async def fetch(self, request):
        return Response.json(RUNS)
