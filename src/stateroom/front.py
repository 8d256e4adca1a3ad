"""What the server's requests reach when more than the Worker answers them.

``Front`` stands where ``LocalEvents.worker`` would hold the ``WorkerRuntime``:

* ``/__stateroom/...`` goes to the admin surface (metrics, dashboard) when it is on;
* in ``stateroom dev``, while the code or configuration does not load, every other
  request is answered ``500`` with the error (the watcher goes on and loads the fix);
* everything else goes to the running version of the Worker, counted by status when
  metrics are on.

``stateroom serve`` without ``--metrics`` or ``--dashboard`` does not use it: the
runtime is the server's worker, as before.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Protocol

from stateroom.api.requests import Request
from stateroom.api.responses import Response
from stateroom.runtime.metrics import RuntimeMetrics

if TYPE_CHECKING:
    from stateroom.worker import WorkerRuntime

ADMIN_PREFIX = "/__stateroom"


class AdminSurface(Protocol):
    async def handle(self, request: Request, path: str) -> Response: ...

    async def close(self) -> None: ...


def request_path(url: str) -> str:
    """The path (and query) of an absolute URL."""
    rest = url.partition("://")[2]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


class Front:
    def __init__(self, runtime: WorkerRuntime | None, metrics: RuntimeMetrics) -> None:
        # The version serving; while ``error`` is set, the last one that loaded (its
        # hibernatable sockets move to the next version that does).
        self.runtime = runtime
        self.metrics = metrics
        self.error: str | None = None
        self.admin: AdminSurface | None = None
        self.responses: Counter[int] = Counter()

    async def fetch(self, request: Request) -> Response:
        if self.admin is not None:
            path = request_path(request.url)
            if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                return await self.admin.handle(request, path)
        if not self.metrics.enabled:
            return await self._app(request)
        try:
            response = await self._app(request)
        except Exception:
            self.responses[500] += 1
            raise
        self.responses[response.status] += 1
        return response

    async def _app(self, request: Request) -> Response:
        if self.error is not None or self.runtime is None:
            return Response(
                f"stateroom dev: the Worker does not load; fix it and save (it reloads "
                f"by itself).\n\n{self.error}",
                status=500,
                headers={"Content-Type": "text/plain;charset=UTF-8"},
            )
        return await self.runtime.fetch(request)

    async def shutdown(self) -> None:
        if self.admin is not None:
            await self.admin.close()
        if self.runtime is not None:
            await self.runtime.shutdown()
