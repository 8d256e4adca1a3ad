"""Records each scheduled() run; ``/runs`` lists them (cron, scheduledTime)."""

from stateroom import Response, WorkerEntrypoint

RUNS = []


class Default(WorkerEntrypoint):
    async def scheduled(self, controller):
        RUNS.append({"cron": controller.cron, "scheduledTime": controller.scheduledTime})

    async def fetch(self, request):
        if request.url.endswith("/runs"):
            return Response.json(RUNS)
        return Response("not found", status=404)
