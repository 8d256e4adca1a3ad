"""What the dashboard shows, as one JSON-able dict: objects, sockets, alarms, counters."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from stateroom.runtime.hibernation import deserialize_attachment

if TYPE_CHECKING:
    from stateroom.admin.errors import RecentErrors
    from stateroom.front import Front
    from stateroom.runtime.actor import ActorHost, ActorNamespace
    from stateroom.server.server import Server

# Longest text shown for one attachment or value.
MAX_TEXT = 300


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _attachment(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return short(deserialize_attachment(data))
    except Exception as exc:  # an encoding from a newer version: say so, do not fail
        return f"<cannot decode: {exc}>"


def _sockets(host: ActorHost) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "kind": "hibernatable",
            "tags": list(record.tags),
            "attachment": _attachment(record.attachment),
        }
        for record in list(host.hibernation.sockets.values())
    ]
    out.extend(
        {"kind": "accept", "tags": [], "attachment": None} for _ in list(host.listener_sockets)
    )
    return out


def _namespace(ns: ActorNamespace, seen: dict[tuple[str, str], str | None]) -> dict[str, Any]:
    objects: dict[str, dict[str, Any]] = {}
    for hex_id, host in list(ns.hosts.items()):
        state = "live" if host.instance is not None else "hibernated"
        objects[hex_id] = {
            "id": hex_id,
            "name": host.id.name,
            "state": state,
            "sockets": _sockets(host),
        }
    known = [hex_id for (binding, hex_id) in list(seen) if binding == ns.binding]
    # A backend that cannot list: show what this process has seen.
    with contextlib.suppress(Exception):
        known.extend(ns.backend.stored_objects(ns.storage_name))
    for hex_id in known:
        if hex_id not in objects:
            name = seen.get((ns.binding, hex_id))
            objects[hex_id] = {"id": hex_id, "name": name, "state": "evicted", "sockets": []}
    for hex_id, (when_ms, retry) in list(ns.alarms.scheduled.items()):
        if hex_id in objects:
            objects[hex_id]["alarm"] = {"at_ms": when_ms, "retry": retry}
    ordered = sorted(objects.values(), key=lambda o: (o["name"] is None, o["name"] or "", o["id"]))
    return {"binding": ns.binding, "class": ns.cls.__name__, "objects": ordered}


def snapshot(
    front: Front,
    server: Server | None,
    errors: RecentErrors,
    own_sockets: int = 0,
    own_messages: int = 0,
) -> dict[str, Any]:
    """The dashboard's view; ``own_sockets`` and ``own_messages`` are the dashboard's own
    feeds and what it sent on them, left out of the counters (or every push would be a
    change, and call for another)."""
    m = front.metrics
    runtime = front.runtime
    namespaces = []
    if runtime is not None:
        namespaces = [_namespace(ns, m.names) for ns in runtime.namespaces.values()]
    open_sockets, received, sent = server.websocket_counts() if server is not None else (0, 0, 0)
    return {
        "worker": runtime.config.name if runtime is not None else None,
        "load_error": front.error,
        "counters": {
            "requests": sum(front.responses.values()),
            "websockets_open": open_sockets - own_sockets,
            "messages_in": received,
            "messages_out": sent - own_messages,
            "activations": m.activations,
            "evictions": m.evictions,
            "hibernations": m.hibernations,
            "resets": m.resets,
            "storage_commits": m.commits,
            "alarm_runs": m.alarm_runs,
            "alarm_retries": m.alarm_retries,
            "loop_lag_max_ms": round(m.loop_lag_max * 1000, 1),
        },
        "namespaces": namespaces,
        "errors": list(errors.records)[::-1],
    }


def now_ms() -> int:
    return int(time.time() * 1000)
