"""``/__stateroom/``: the dashboard, its live feed, its JSON, and Prometheus metrics.

Every path under the prefix is answered here, never by the Worker, once the admin
surface is on. With a token (``--admin-token``; required by ``stateroom serve``),
each request must carry it, as ``Authorization: Bearer TOKEN`` (what Prometheus
sends) or ``?token=TOKEN`` (what the dashboard's page and its WebSocket use):
without it the answer is 401. A part that is off (``--metrics`` or ``--dashboard``
not given to ``serve``) is 404.

The page gets its data over a WebSocket (``/__stateroom/live``): a snapshot of the
objects, their sockets and alarms, the counters and the recent errors, sent when it
connects and again whenever it changes (checked every ``interval`` seconds while
someone is watching).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from stateroom.admin.errors import RecentErrors
from stateroom.admin.metrics import CONTENT_TYPE, exposition, make_registry
from stateroom.admin.snapshot import short, snapshot
from stateroom.api.requests import Request
from stateroom.api.responses import Response
from stateroom.api.websockets import WebSocket, WebSocketPair
from stateroom.front import ADMIN_PREFIX
from stateroom.runtime.context import current_host

if TYPE_CHECKING:
    from stateroom.front import Front
    from stateroom.server.server import Server

logger = logging.getLogger("stateroom.admin")

# Most keys a storage listing shows, and rows a SQL table or query result shows.
STORAGE_LIMIT = 200
SQL_ROWS = 50


class _RollBack(Exception):
    """Ends the dashboard's query transaction: whatever it wrote is undone."""


def _table(cursor: Any) -> dict[str, Any]:
    raw = cursor.raw()
    rows: list[list[Any]] = []
    for row in raw:
        if len(rows) == SQL_ROWS:
            break
        rows.append([value if isinstance(value, int | float) else short(value) for value in row])
    return {"columns": list(raw.columnNames), "rows": rows}


def _rolled_back(storage: Any, query: str) -> dict[str, Any]:
    result: dict[str, Any] = {}

    def read() -> None:
        result.update(_table(storage.sql.exec(query)))
        raise _RollBack

    try:
        storage.transactionSync(read)
    except _RollBack:
        pass
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    return result


_HEX_ID = re.compile(r"[0-9a-f]{64}")


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, default=str),
        status=status,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
    )


class Admin:
    def __init__(
        self,
        front: Front,
        server: Callable[[], Server | None],
        *,
        token: str | None,
        metrics: bool,
        dashboard: bool,
        interval: float = 0.25,
    ) -> None:
        self.front = front
        self.server = server
        self.token = token
        self.metrics = metrics
        self.dashboard = dashboard
        self.interval = interval
        self.registry = make_registry(front, server)
        self.errors = RecentErrors()
        self.errors.install()
        self.watchers: set[WebSocket] = set()
        self._last = ""
        self.sent = 0  # snapshots sent on the feeds, left out of the counters they show
        self._task: asyncio.Task[None] | None = None

    # -- requests ------------------------------------------------------------------------

    async def handle(self, request: Request, path: str) -> Response:
        route, _, query_string = path.partition("?")
        query = parse_qs(query_string)
        if not self._authorized(request, query):
            return Response(
                "401 Unauthorized: this needs the admin token (Authorization: Bearer TOKEN, "
                "or ?token=TOKEN)\n",
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="stateroom"'},
            )
        sub = route[len(ADMIN_PREFIX) :]
        if sub == "/metrics" and self.metrics:
            return Response(exposition(self.registry), headers={"Content-Type": CONTENT_TYPE})
        if not self.dashboard:
            return Response("Not Found", status=404)
        if sub == "":  # the page's relative links need the slash
            slash = ADMIN_PREFIX + "/" + (f"?{query_string}" if query_string else "")
            return Response(None, status=308, headers={"Location": slash})
        if sub in ("/", "/index.html"):
            page = files("stateroom.admin").joinpath("static/index.html").read_bytes()
            return Response(
                page,
                headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
            )
        if sub == "/live":
            return self._live(request)
        if sub == "/api/state":
            return _json(self._snapshot())
        if sub in ("/api/storage", "/api/sql"):
            binding = (query.get("binding") or [""])[0]
            hex_id = (query.get("id") or [""])[0]
            if sub == "/api/storage":
                return await self._storage(binding, hex_id)
            return await self._sql(binding, hex_id, (query.get("q") or [""])[0])
        return Response("Not Found", status=404)

    def _authorized(self, request: Request, query: dict[str, list[str]]) -> bool:
        if self.token is None:
            return True
        given = None
        auth = request.headers.get("authorization") or ""
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif query.get("token"):
            given = query["token"][0]
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    # -- the live feed ------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return snapshot(self.front, self.server(), self.errors, len(self.watchers), self.sent)

    def _send(self, ws: WebSocket, text: str) -> None:
        self.sent += 1
        ws.send(text)

    def _live(self, request: Request) -> Response:
        if (request.headers.get("upgrade") or "").lower() != "websocket":
            return Response("this is the dashboard's WebSocket feed", status=426)
        client, server = WebSocketPair()
        server.accept()
        # Made before this feed is a watcher: its connection does not exist yet either.
        first = json.dumps(self._snapshot(), default=str)
        watchers = self.watchers
        if first != self._last:
            self._broadcast(first)  # the others are one change behind: catch them up too
        watchers.add(server)

        def closed(event: Any) -> None:
            watchers.discard(server)
            with contextlib.suppress(Exception):
                server.close(1000, "bye")

        server.addEventListener("close", closed)
        server.addEventListener("error", lambda event: watchers.discard(server))
        self._send(server, first)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._push())
        return Response(None, status=101, web_socket=client)

    async def _push(self) -> None:
        """Send the snapshot to every watcher whenever it changes, while any watch."""
        while self.watchers:
            await asyncio.sleep(self.interval)
            try:
                text = json.dumps(self._snapshot(), default=str)
            except Exception:
                logger.exception("the dashboard's snapshot failed")
                continue
            if text != self._last:
                self._broadcast(text)

    def _broadcast(self, text: str) -> None:
        self._last = text
        for ws in list(self.watchers):
            try:
                self._send(ws, text)
            except Exception:
                self.watchers.discard(ws)

    # -- storage ------------------------------------------------------------------------------

    async def _in_object(
        self, binding: str, hex_id: str, fn: Callable[[Any], Any]
    ) -> tuple[Any, Response | None]:
        """``fn(storage)`` run as one of the object's own events: in its turn, behind its
        input gate (an object out of memory is constructed to answer)."""
        runtime = self.front.runtime
        ns = runtime.namespaces.get(binding) if runtime is not None else None
        if ns is None:
            return None, _json({"error": f"no namespace {binding!r}"}, 404)
        if not _HEX_ID.fullmatch(hex_id):
            return None, _json({"error": "id must be 64 lowercase hex digits"}, 400)

        async def event(instance: Any) -> Any:
            host = current_host.get()
            assert host is not None and host.ctx is not None
            result = fn(host.ctx.storage)
            return await result if asyncio.iscoroutine(result) else result

        host = ns.hosts.get(hex_id)
        if host is not None:
            object_id = host.id
        else:
            object_id = ns.make_id(hex_id, self.front.metrics.names.get((binding, hex_id)))
        try:
            return await ns.host(object_id).run(event), None
        except Exception as exc:
            return None, _json({"error": f"{type(exc).__name__}: {exc}"}, 500)

    async def _storage(self, binding: str, hex_id: str) -> Response:
        async def read(storage: Any) -> list[tuple[str, str]]:
            entries = await storage.list(limit=STORAGE_LIMIT)
            return [(key, short(value)) for key, value in entries.items()]

        entries, error = await self._in_object(binding, hex_id, read)
        if error is not None:
            return error
        return _json({"binding": binding, "id": hex_id, "limit": STORAGE_LIMIT, "entries": entries})

    async def _sql(self, binding: str, hex_id: str, query: str) -> Response:
        """The object's SQL tables (first rows of each), or the result of ``query``.

        A query runs inside ``transactionSync()`` that is always rolled back: it reads
        what it likes, and whatever it writes is undone before the event ends.
        """

        def run(storage: Any) -> Any:
            sql = storage.sql
            if query:
                return [_rolled_back(storage, query)]
            names = sql.exec(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).toArray()
            reserved = ("_cf_", "_stateroom_", "sqlite_")
            tables = []
            for row in names:
                name = row["name"]
                if name.startswith(reserved):
                    continue
                quoted = '"' + name.replace('"', '""') + '"'
                result = _table(sql.exec(f"SELECT * FROM {quoted} LIMIT {SQL_ROWS}"))
                result["table"] = name
                tables.append(result)
            return tables

        tables, error = await self._in_object(binding, hex_id, run)
        if error is not None:
            return error
        return _json({"binding": binding, "id": hex_id, "query": query or None, "results": tables})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for ws in list(self.watchers):
            with contextlib.suppress(Exception):
                ws.close(1001, "Going Away")
        self.watchers.clear()
        self.errors.uninstall()
