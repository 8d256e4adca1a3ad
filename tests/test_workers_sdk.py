"""``workers``, ``js`` and ``pyodide.ffi``: the adapters Cloudflare's Python Workers import.

Whole Workers written against them run over real sockets in test_cloudflare_examples.py;
here each adapter's behaviour is pinned down directly, and ``fetch`` talks to a real
HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPMethod, HTTPStatus

import pytest

import js
import pyodide
import stateroom
import workers
from pyodide.ffi import (
    JsArray,
    JsException,
    JsMap,
    JsObject,
    JsProxy,
    create_once_callable,
    create_proxy,
    destroy_proxies,
    run_sync,
    to_js,
)

# -- workers.Response / FetchResponse / Request ----------------------------------------


def test_response_takes_the_sdk_signature() -> None:
    response = workers.Response("body", 201, "Made", {"X-A": "1"})
    assert isinstance(response, stateroom.Response)
    assert isinstance(response, workers.FetchResponse)
    assert (response.status, response.statusText, response.status_text) == (201, "Made", "Made")
    assert response.headers.get("x-a") == "1"
    assert response.headers.get("content-type") == "text/plain;charset=UTF-8"
    assert workers.Response(None, status=HTTPStatus.NO_CONTENT).status == 204
    assert workers.Response().status == 200
    assert workers.Response(b"\x00\x01").body == b"\x00\x01"
    with pytest.raises(TypeError, match="Unsupported type in Response: dict"):
        workers.Response({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected type for headers"):
        workers.Response("x", headers="X-A: 1")


def test_response_with_a_websocket_and_the_javascript_spellings() -> None:
    client, _server = js.WebSocketPair.new().object_values()
    assert workers.Response(None, status=101, web_socket=client).webSocket is client
    assert workers.Response(None, status=101, webSocket=client).web_socket is client
    assert workers.Response("x", statusText="Fine").status_text == "Fine"
    with pytest.raises(ValueError, match="101"):
        workers.Response(None, status=200, web_socket=client)


def test_response_json_static_and_instance() -> None:
    made = workers.Response.json({"a": [1, 2]}, status=HTTPStatus.CREATED)
    assert made.status == 201
    assert made.headers.get("content-type") == "application/json"
    assert asyncio.run(made.json()) == {"a": [1, 2]}
    same = workers.Response.from_json([1], headers={"Content-Type": "application/x+json"})
    assert same.headers.get("content-type") == "application/x+json"
    assert asyncio.run(same.text()) == "[1]"
    assert asyncio.run(same.buffer()) == b"[1]"
    assert same.js_object is same
    redirect = workers.Response.redirect("https://example.test/", HTTPStatus.SEE_OTHER)
    assert (redirect.status, redirect.headers.get("location")) == (303, "https://example.test/")
    copy = workers.Response(js.Response.new("from js", {"status": 202}))
    assert (copy.status, asyncio.run(copy.text())) == (202, "from js")
    with pytest.raises(ValueError, match="no options"):
        workers.Response(js.Response.new("x"), status=200)
    replaced = copy.replace_body("new body")
    assert (replaced.status, asyncio.run(replaced.text())) == (202, "new body")


def test_request() -> None:
    request = workers.Request("https://test.com/a", method=HTTPMethod.POST, body="x")
    assert isinstance(request, stateroom.Request)
    assert request.method == "POST" and request.method == HTTPMethod.POST
    assert request.js_object is request and request.cf is None
    assert asyncio.run(request.text()) == "x"
    with pytest.raises(OSError, match="Body already used"):
        asyncio.run(request.buffer())
    assert (
        repr(workers.Request("https://t.test/")) == "Request(method='GET', url='https://t.test/')"
    )
    with pytest.raises(TypeError, match="unexpected options: mode"):
        workers.Request("https://t.test/", mode="cors")


# -- env, entrypoints ------------------------------------------------------------------


def test_env_before_and_after_the_worker_exists() -> None:
    class Default(workers.WorkerEntrypoint):
        async def fetch(self, request: object) -> workers.Response:
            return workers.Response("x")

    workers.entrypoints._Current.env = None
    with pytest.raises(RuntimeError, match="before the Worker was constructed"):
        _ = workers.env.ANYTHING
    env = type("Env", (), {"NAME": "value"})()
    ctx = stateroom.ExecutionContext()
    entry = Default(ctx, env)
    assert entry.env.NAME == "value" and workers.env.NAME == "value"
    assert "NAME" in workers.env and workers.env["NAME"] == "value"
    with workers.patch_env(NAME="patched", EXTRA=1):
        assert (workers.env.NAME, workers.env.EXTRA) == ("patched", 1)
    assert workers.env.NAME == "value" and "EXTRA" not in workers.env
    module = workers.import_from_javascript("cloudflare:workers")
    assert module.env.NAME == "value"
    with pytest.raises(ImportError, match="cloudflare:sockets"):
        workers.import_from_javascript("cloudflare:sockets")

    async def wait() -> None:
        done = asyncio.Event()

        async def later() -> None:
            done.set()

        workers.wait_until(later())
        await asyncio.wait_for(done.wait(), 5)

    asyncio.run(wait())


def test_handler_wraps_request_and_env() -> None:
    @workers.handler
    def on_fetch(request: object, env: object) -> tuple[object, object]:
        return request, env

    request, env = on_fetch(stateroom.Request("https://t.test/"), object())
    assert isinstance(request, workers.Request)
    assert isinstance(env, workers.rpc._EnvWrapper)
    assert workers.python_to_rpc(x := {"a": 1}) is x and workers.python_from_rpc(x) is x


# -- js ----------------------------------------------------------------------------------


def test_websocket_pair() -> None:
    pair = js.WebSocketPair.new()
    assert isinstance(pair, stateroom.WebSocketPair)
    client, server = pair
    assert (client, server) == tuple(pair.object_values()) == tuple(js.Object.values(pair))
    assert isinstance(js.WebSocketPair(), stateroom.WebSocketPair)
    assert js.Object.keys(pair) == ["0", "1"]


def test_js_response_request_headers() -> None:
    response = js.Response.new("hi", status=201, headers=[("X-A", "1")])
    assert isinstance(response, stateroom.Response) and response.status == 201
    response = js.Response.new(None, to_js({"status": 204}, dict_converter=js.Object.fromEntries))
    assert response.status == 204
    made = js.Response.json({"a": 1}, {"status": 202})
    assert made.status == 202 and asyncio.run(made.json()) == {"a": 1}
    request = js.Request.new("https://t.test/p", {"method": "PUT", "body": "b"})
    assert (request.method, asyncio.run(request.text())) == ("PUT", "b")
    headers = js.Headers.new({"A": "1"})
    assert headers.get("a") == "1" and isinstance(headers, stateroom.Headers)
    assert js.Headers.new([["B", "2"]]).get("b") == "2"


def test_url_date_json_object_array() -> None:
    url = js.URL.new("/p/q?x=1&y=2&x=3#h", "https://user@example.test:8443/base")
    assert (url.protocol, url.hostname, url.port, url.host) == (
        "https:",
        "example.test",
        "8443",
        "example.test:8443",
    )
    assert (url.pathname, url.search, url.hash) == ("/p/q", "?x=1&y=2&x=3", "#h")
    assert url.origin == "https://example.test:8443"
    assert url.searchParams.get("x") == "1" and url.searchParams.getAll("x") == ["1", "3"]
    with pytest.raises(JsException, match="Invalid URL"):
        js.URL.new("no scheme")
    before = datetime.now(UTC).timestamp() * 1000
    now = js.Date.now()
    assert isinstance(now, int) and before - 1 <= now <= before + 60_000
    date = js.Date.new("2024-05-06T07:08:09.123Z")
    assert date.getTime() == 1714979289123 and date.toISOString() == "2024-05-06T07:08:09.123Z"
    assert date.to_py() == datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    assert js.JSON.stringify({"a": [1, None], "d": date}) == (
        '{"a":[1,null],"d":"2024-05-06T07:08:09.123Z"}'
    )
    parsed = js.JSON.parse('{"a": {"b": 2}}')
    assert parsed.a.b == 2 and isinstance(parsed, JsObject) and parsed.missing is None
    with pytest.raises(Exception, match="SyntaxError"):
        js.JSON.parse("{")
    obj = js.Object.fromEntries([["k", 1]])
    assert obj.k == 1 and js.Object.entries(obj) == [["k", 1]]
    assert js.Array.new(1, 2) == [1, 2] and js.Array.isArray(js.Array.new())
    assert js.undefined is None and not js.null


def test_console_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, "stateroom.console"):
        js.console.log("hello", 1, {"a": True})
        js.console.error("bad")
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert records == [("INFO", 'hello 1 {"a":true}'), ("ERROR", "bad")]


def test_timers_and_microtasks() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        fired = asyncio.Event()
        js.setTimeout(lambda: seen.append("cancelled"), 1)
        js.clearTimeout(js.setTimeout(lambda: seen.append("cancelled"), 1))
        js.queueMicrotask(lambda: seen.append("microtask"))

        async def later(tag: str) -> None:
            seen.append(tag)
            fired.set()

        js.setTimeout(later, 5, "timeout")
        await asyncio.wait_for(fired.wait(), 5)
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == "microtask" and seen[-1] == "timeout"


# -- pyodide.ffi --------------------------------------------------------------------------


def test_to_js() -> None:
    array = to_js([1, (2, 3), {"a": 1}])
    assert isinstance(array, JsArray) and isinstance(array, JsProxy)
    assert array == [1, [2, 3], {"a": 1}] and isinstance(array[2], JsMap)
    assert array.to_py() == [1, [2, 3], {"a": 1}] and type(array.to_py()) is list
    obj = to_js({"x": {"y": 1}}, dict_converter=js.Object.fromEntries)
    assert isinstance(obj, JsObject) and obj.x.y == 1
    assert to_js("s") == "s" and to_js(None) is None and to_js(b"b") == b"b"
    # Values from to_js store as their plain types.
    from stateroom.storage.encoding import decode, encode

    assert decode(encode(to_js(["a", {"b": 1}]))) == ["a", {"b": 1}]
    assert pyodide.__version__ != "0.26.0a2"


def test_proxies() -> None:
    calls: list[int] = []
    proxy = create_proxy(calls.append)
    proxy(1)
    proxy(2)
    proxy.destroy()  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="destroy"):
        proxy(3)
    once = create_once_callable(calls.append)
    once(4)
    with pytest.raises(RuntimeError):
        once(5)
    other = create_proxy(calls.append)
    destroy_proxies([other])
    with pytest.raises(RuntimeError):
        other(6)
    assert calls == [1, 2, 4]


def test_run_sync() -> None:
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0.001)
        return a + b

    assert run_sync(add(1, 2)) == 3

    async def inside_a_loop() -> int:
        return run_sync(add(3, 4))  # blocks this loop while another runs add()

    assert asyncio.run(inside_a_loop()) == 7

    async def fails() -> None:
        raise ValueError("from the coroutine")

    with pytest.raises(ValueError, match="from the coroutine"):
        asyncio.run(_call(lambda: run_sync(fails())))


async def _call(fn: object) -> object:
    return fn()  # type: ignore[operator]


# -- outbound fetch ---------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/hello")
            self.end_headers()
            return
        status = 404 if self.path == "/missing" else 200
        body = json.dumps({"path": self.path, "x": self.headers.get("X-Test")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201, "Made")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.upper())

    def log_message(self, format: str, *args: object) -> None:
        logging.getLogger("test.http").debug(format, *args)


@pytest.fixture
def origin() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch(origin: str) -> None:
    async def scenario() -> None:
        response = await workers.fetch(f"{origin}/hello", headers={"X-Test": "1"})
        assert isinstance(response, workers.Response) and response.ok
        assert await response.json() == {"path": "/hello", "x": "1"}
        assert response.url == f"{origin}/hello"
        followed = await workers.fetch(f"{origin}/redirect")
        assert followed.url == f"{origin}/hello" and followed.status == 200
        missing = await workers.fetch(f"{origin}/missing")
        assert missing.status == 404 and not missing.ok
        posted = await workers.fetch(
            workers.Request(f"{origin}/echo", method=HTTPMethod.POST, body="shout")
        )
        assert (posted.status, posted.status_text, await posted.text()) == (201, "Made", "SHOUT")
        via_js = await js.fetch(f"{origin}/echo", {"method": "POST", "body": "js"})
        assert await via_js.text() == "JS"
        with pytest.raises(OSError, match=r"fetch http://127\.0\.0\.1:1/"):
            await workers.fetch("http://127.0.0.1:1/")

    asyncio.run(scenario())
