"""The dashboard's feed and JSON over real sockets, and who may reach them (tests/apps/dx).

tests/test_dashboard_browser.py loads the page itself in Chromium.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from websockets.sync.client import ClientConnection, connect

from support import RunningServer, fetch, serve

APP = "tests/apps/dx"
TOKEN = "dash-token"


def next_state(
    feed: ClientConnection, check: Any, timeout: float = 10.0, last: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The snapshot ``last`` read if it satisfies ``check``, else the next one pushed that
    does (the feed pushes only changes)."""
    if last is not None and check(last):
        return last
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(feed.recv(timeout=max(0.01, deadline - time.monotonic())))
        if check(state):
            return state


def objects(state: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {o["name"]: o for ns in state["namespaces"] for o in ns["objects"]}


def status_of(srv: RunningServer, path: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(srv.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_feed_shows_objects_sockets_alarms_errors_and_storage_as_they_change() -> None:
    with serve(
        APP, "--hibernation-timeout", "0.3", "--alarm-retry-delay", "60", command="dev"
    ) as srv:
        with connect(srv.ws_url + "/__stateroom/live") as feed:
            first = json.loads(feed.recv(timeout=5))
            assert first["worker"] == "dx"
            # Its own feed is not counted: once nothing changes (the loop's lag settles as
            # the server starts), nothing more is pushed.
            assert first["counters"]["websockets_open"] == 0
            for _ in range(10):
                try:
                    pushed = json.loads(feed.recv(timeout=0.8))
                except TimeoutError:
                    break
                assert pushed["counters"]["messages_out"] == 0, pushed["counters"]
            else:
                raise AssertionError("the feed kept pushing with nothing changing")
            assert [ns["binding"] for ns in first["namespaces"]] == ["ROOMS"]
            assert objects(first) == {}
            with connect(srv.ws_url + "/room/alice/ws?user=ann") as client:
                client.send("hi")
                assert client.recv(timeout=5) == "echo: hi"
                live = next_state(feed, lambda s: "alice" in objects(s))
                alice = objects(live)["alice"]
                assert alice["state"] == "live"
                assert alice["sockets"] == [
                    {
                        "kind": "hibernatable",
                        "tags": ["room:alice"],
                        "attachment": "{'user': 'ann'}",
                    }
                ]
                assert live["counters"]["messages_in"] >= 1
                # Hibernated, its socket still listed.
                asleep = next_state(
                    feed, lambda s: objects(s)["alice"]["state"] == "hibernated", last=live
                )
                assert objects(asleep)["alice"]["sockets"][0]["tags"] == ["room:alice"]
            # An alarm, failing: its next time and retry, and the error with its traceback.
            assert fetch(srv, "/room/bob/alarm?ms=0&fail=1") == (200, "set")
            failed = next_state(feed, lambda s: any(e["object_name"] == "bob" for e in s["errors"]))
            error = next(e for e in failed["errors"] if e["object_name"] == "bob")
            assert "alarm() of Room 'bob'" in error["message"]
            assert "RuntimeError: alarm failed on purpose" in error["traceback"]
            retrying = next_state(feed, lambda s: "alarm" in objects(s).get("bob", {}), last=failed)
            assert objects(retrying)["bob"]["alarm"]["retry"] == 1
            # Storage, read as one of the object's own events.
            assert fetch(srv, "/room/bob/put?k=greeting&v=hello") == (200, "ok")
            bob = objects(retrying)["bob"]
            status, body = fetch(srv, f"/__stateroom/api/storage?binding=ROOMS&id={bob['id']}")
            assert status == 200
            entries = dict(json.loads(body)["entries"])
            assert entries["greeting"] == "'hello'"
            assert entries["fail"] == "True"
            # SQL: the tables' first rows, and a query whose writes are rolled back.
            assert fetch(srv, "/room/bob/note?text=first") == (200, "noted")
            api = f"/__stateroom/api/sql?binding=ROOMS&id={bob['id']}"
            status, body = fetch(srv, api)
            assert status == 200, body
            assert json.loads(body)["results"] == [
                {"table": "notes", "columns": ["id", "text"], "rows": [[1, "'first'"]]}
            ]
            status, body = fetch(srv, api + "&q=DELETE%20FROM%20notes%20RETURNING%20id")
            assert json.loads(body)["results"] == [{"columns": ["id"], "rows": [[1]]}]
            status, body = fetch(srv, api + "&q=SELECT%20count(*)%20AS%20n%20FROM%20notes")
            assert json.loads(body)["results"] == [{"columns": ["n"], "rows": [[1]]}]
            status, body = fetch(srv, api + "&q=SELECT%20nonsense")
            assert "no such column" in json.loads(body)["results"][0]["error"]
        # The same snapshot as JSON.
        status, body = fetch(srv, "/__stateroom/api/state")
        assert status == 200 and "bob" in {
            o["name"] for o in json.loads(body)["namespaces"][0]["objects"]
        }


def test_evicted_objects_stay_listed_by_name() -> None:
    with serve(APP, "--idle-timeout", "0.2", command="dev") as srv:
        assert fetch(srv, "/room/carol/put?k=a&v=1") == (200, "ok")
        with connect(srv.ws_url + "/__stateroom/live") as feed:
            state = next_state(
                feed, lambda s: objects(s).get("carol", {}).get("state") == "evicted"
            )
            assert objects(state)["carol"]["sockets"] == []
            assert state["counters"]["evictions"] == 1


def test_serve_refuses_the_dashboard_without_the_token() -> None:
    with serve(APP) as srv:
        # Off: the path belongs to the Worker.
        assert fetch(srv, "/__stateroom/") == (404, "not found")
    with serve(APP, "--dashboard", "--admin-token", TOKEN) as srv:
        for path in ("/__stateroom/", "/__stateroom/api/state", "/__stateroom/live"):
            assert status_of(srv, path) == 401
            assert status_of(srv, path + "?token=wrong") == 401
            assert status_of(srv, path, {"Authorization": "Bearer wrong"}) == 401
        try:
            with connect(srv.ws_url + "/__stateroom/live"):
                raise AssertionError("the feed opened without the token")
        except Exception as exc:  # websockets' InvalidStatus
            assert "401" in str(exc)
        assert status_of(srv, f"/__stateroom/?token={TOKEN}") == 200
        assert status_of(srv, "/__stateroom/api/state", {"Authorization": f"Bearer {TOKEN}"}) == 200
        with connect(srv.ws_url + f"/__stateroom/live?token={TOKEN}") as feed:
            assert json.loads(feed.recv(timeout=5))["worker"] == "dx"
        # --dashboard alone does not publish metrics.
        assert status_of(srv, f"/__stateroom/metrics?token={TOKEN}") == 404
        # The Worker's own paths are not affected.
        assert fetch(srv, "/room/a/ping") == (200, "pong")
