"""Errors you can see and logs you can read: dev's 500 pages, serve's request ids,
handler and alarm failures named by object, the access log and the JSON log format."""

from __future__ import annotations

import asyncio
import http.client
import json
import re

import websockets

from support import RunningServer, serve

APP = "tests/apps/errors"


def get(
    srv: RunningServer, path: str, accept: str | None = None
) -> tuple[int, dict[str, str], str]:
    """GET over a real connection: (status, headers by lower-case name, body)."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        response = conn.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read().decode()
    finally:
        conn.close()


def _object(name: str) -> str:
    return rf"Faulty '{name}' \(id [0-9a-f]{{64}}\)"


def test_dev_500_is_the_traceback_as_text() -> None:
    with serve(APP, "--in-memory", command="dev") as srv:
        status, headers, body = get(srv, "/obj/alpha/boom")
        assert status == 500
        assert headers["content-type"].startswith("text/plain")
        assert "x-request-id" not in headers
        assert body.startswith("Internal Server Error\n")
        assert re.search(rf"ValueError in {_object('alpha')}\n", body), body
        assert f"while handling GET http://{srv.host}:{srv.port}/obj/alpha/boom" in body
        assert "Traceback (most recent call last)" in body
        assert "ValueError: <script>alert('x')</script> broke" in body
        # curl's Accept ties text/html with text/plain: plain text.
        assert get(srv, "/obj/alpha/boom", "*/*")[1]["content-type"].startswith("text/plain")
        status, _, body = get(srv, "/worker-boom")
        assert status == 500 and "RuntimeError in the Worker (Default)" in body
        # An object the request reached, which answered, is not the one blamed.
        status, _, body = get(srv, "/reached-then-boom")
        assert status == 500 and "RuntimeError in the Worker (Default)" in body, body
        srv.wait_for_log(r"Uncaught exception while handling GET \S+/worker-boom")


def test_dev_500_is_an_escaped_html_page_for_browsers() -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    with serve(APP, "--in-memory", command="dev") as srv:
        status, headers, body = get(srv, "/obj/beta/boom", browser)
        assert status == 500
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert body.startswith("<!DOCTYPE html>")
        assert "Traceback (most recent call last)" in body
        # Everything from the app is escaped: its message, the object's name.
        assert "<script>" not in body
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; broke" in body
        assert re.search(r"Faulty &#x27;beta&#x27; \(id [0-9a-f]{64}\)", body), body
        assert f"GET http://{srv.host}:{srv.port}/obj/beta/boom" in body
        status, headers, body = get(srv, "/worker-boom", browser)
        assert "the Worker &lt;itself&gt; &amp; failed" in body


def test_serve_500_carries_the_request_id_of_its_log_line() -> None:
    with serve(APP, "--in-memory") as srv:
        status, headers, body = get(srv, "/obj/gamma/boom", "text/html")
        assert status == 500
        rid = headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", rid)
        assert body == f"Internal Server Error (request id {rid})"
        assert headers["content-type"] == "text/plain"
        line = srv.wait_for_log(r"Uncaught exception while handling GET \S+ in .*\n").group(0)
        assert re.search(_object("gamma"), line) and f"[request id {rid}]" in line, line
        assert "ValueError: <script>" in srv.output()  # the traceback is in the log only
        # Each 500 has its own id.
        assert get(srv, "/obj/gamma/boom")[1]["x-request-id"] != rid


def test_unsupported_body_type_says_what_works() -> None:
    with serve(APP, "--in-memory") as srv:
        assert get(srv, "/obj/delta/badbody")[0] == 500
        srv.wait_for_log(
            r"TypeError: A body of type dict is not supported: use str, bytes, bytearray, "
            r"memoryview, an async iterable of bytes or str \(a stream\), or None "
            r"\(for JSON, use Response.json\(value\)\)"
        )


def test_websocket_handler_exceptions_name_the_object() -> None:
    async def run(srv: RunningServer) -> None:
        async with websockets.connect(f"{srv.ws_url}/obj/hib/hibernatable") as ws:
            await ws.send("boom")
            await ws.send("after")
            assert await ws.recv() == "after"  # the socket outlives the handler's exception
        async with websockets.connect(f"{srv.ws_url}/obj/lis/listener") as ws:
            await ws.send("boom")
            srv.wait_for_log(r"KeyError: 'listener boom'")

    with serve(APP, "--in-memory") as srv:
        asyncio.run(run(srv))
        srv.wait_for_log(rf"Uncaught exception in webSocketMessage\(\) of {_object('hib')}")
        assert "LookupError: handler boom" in srv.output()
        srv.wait_for_log(rf"Uncaught exception in a WebSocket message handler of {_object('lis')}")


def test_alarm_exceptions_name_the_object() -> None:
    with serve(APP, "--in-memory", "--alarm-retry-delay", "60") as srv:
        assert get(srv, "/obj/clock/alarm")[2] == "armed"
        srv.wait_for_log(rf"alarm\(\) of {_object('clock')} raised; retry 1 in 60.0s")
        srv.wait_for_log("ArithmeticError: alarm boom")


ACCESS = r'127\.0\.0\.1:\d+ - "GET {path} HTTP/1\.1" {status} \d+\.\dms'


def test_access_log_is_on_in_dev() -> None:
    with serve(APP, "--in-memory", command="dev") as srv:
        get(srv, "/ok")
        srv.wait_for_log(r"stateroom: " + ACCESS.format(path="/ok", status=200) + "\n")
        get(srv, "/obj/epsilon/hello?x=1")
        srv.wait_for_log(
            ACCESS.format(path=r"/obj/epsilon/hello\?x=1", status=200) + " " + _object("epsilon")
        )
        get(srv, "/obj/epsilon/boom")
        srv.wait_for_log(ACCESS.format(path="/obj/epsilon/boom", status=500))

        async def upgrade() -> None:
            async with websockets.connect(f"{srv.ws_url}/obj/ws/hibernatable") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"

        asyncio.run(upgrade())
        srv.wait_for_log(
            ACCESS.format(path="/obj/ws/hibernatable", status=101) + " " + _object("ws")
        )
        # An upgrade the app accepted but whose handshake fails is logged as what was sent.
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        conn.request(
            "GET", "/obj/ws/hibernatable", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
        )
        status = conn.getresponse().status
        conn.close()
        assert status != 101
        srv.wait_for_log(ACCESS.format(path="/obj/ws/hibernatable", status=status))
        # One line for the upgrade; none for the messages on the socket.
        assert (
            len(re.findall(ACCESS.format(path="/obj/ws/hibernatable", status=101), srv.output()))
            == 1
        )


def test_access_log_switches() -> None:
    # serve: off unless asked. The 500's log line comes after where the /ok line would be.
    for command, args, expected in (
        ("serve", (), False),
        ("serve", ("--access-log",), True),
        ("dev", ("--no-access-log",), False),
    ):
        with serve(APP, "--in-memory", *args, command=command) as srv:
            get(srv, "/ok")
            get(srv, "/obj/zeta/boom")
            srv.wait_for_log(r"Uncaught exception while handling GET \S+/obj/zeta/boom")
            found = re.search(ACCESS.format(path="/ok", status=200), srv.output())
            assert bool(found) is expected, (command, args, srv.output())


def test_json_log_format() -> None:
    with serve(APP, "--in-memory", "--log-format", "json", "--access-log") as srv:
        get(srv, "/ok")
        _, headers, _ = get(srv, "/obj/eta/boom")
        rid = headers["x-request-id"]
        srv.wait_for_log(r'"status": 500')
        records = [json.loads(line) for line in srv.output().splitlines()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    listening = next(r for r in records if r["message"].startswith("listening on"))
    assert listening["level"] == "info" and listening["logger"] == "stateroom.server"
    error = next(r for r in records if r["message"].startswith("Uncaught exception"))
    assert error["level"] == "error" and error["logger"] == "stateroom.server"
    assert error["request_id"] == rid
    assert error["object_class"] == "Faulty" and error["object_name"] == "eta"
    assert re.fullmatch(r"[0-9a-f]{64}", error["object_id"])
    assert "Traceback (most recent call last)" in error["exception"]
    access = [r for r in records if r["logger"] == "stateroom.access"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [
        ("GET", "/ok", 200),
        ("GET", "/obj/eta/boom", 500),
    ]
    assert access[1]["request_id"] == rid and access[1]["object_id"] == error["object_id"]
    assert "object_id" not in access[0] and access[0]["duration_ms"] >= 0
