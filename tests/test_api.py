"""The user API in isolation: Headers, Request, Response, WebSocketPair."""

from __future__ import annotations

import asyncio

import pytest

from stateroom import Headers, Request, Response, WebSocketPair
from stateroom.api.responses import TEXT_PLAIN


def test_headers_case_insensitive_multivalued() -> None:
    h = Headers({"Content-Type": "text/plain"})
    h.append("X-A", "1")
    h.append("x-a", "2")
    assert h.get("content-type") == "text/plain"
    assert h.get("X-A") == "1, 2"
    assert h.getAll("x-a") == ["1", "2"]
    assert "X-a" in h and h.has("x-A")
    h.set("x-A", "3")
    assert h.get("x-a") == "3"
    h.delete("X-A")
    assert h.get("x-a") is None
    assert list(Headers([("B", "2"), ("a", "1")]).entries()) == [("a", "1"), ("b", "2")]


def test_headers_set_cookie_not_joined() -> None:
    h = Headers([("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    assert h.getSetCookie() == ["a=1", "b=2"]


@pytest.mark.parametrize("bad", ["a b", "a:b", "", "a\r\n"])
def test_headers_reject_invalid_names(bad: str) -> None:
    with pytest.raises(TypeError):
        Headers({bad: "x"})


def test_headers_reject_injection() -> None:
    with pytest.raises(TypeError):
        Headers({"X": "a\r\nEvil: 1"})


def test_request_body_readers() -> None:
    req = Request("http://x/y", method="post", headers={"A": "b"}, body='{"k": 1}')
    assert req.method == "POST"
    assert asyncio.run(req.json()) == {"k": 1}
    assert asyncio.run(req.text()) == '{"k": 1}'
    assert asyncio.run(req.bytes()) == b'{"k": 1}'
    copy = Request(req, method="PUT")
    assert copy.url == "http://x/y" and copy.method == "PUT" and copy.headers.get("a") == "b"
    with pytest.raises(TypeError):
        Request("http://x/", body="no")


def test_response_defaults() -> None:
    r = Response("hi")
    assert r.status == 200 and r.statusText == "OK"
    assert r.headers.get("content-type") == TEXT_PLAIN
    assert asyncio.run(r.text()) == "hi"
    assert Response(b"\x00").headers.get("content-type") is None
    j = Response.json({"a": [1, 2]})
    assert j.headers.get("content-type") == "application/json"
    assert asyncio.run(j.json()) == {"a": [1, 2]}
    with pytest.raises(ValueError, match="200 to 599"):
        Response("x", status=101)
    with pytest.raises(ValueError, match="status 101"):
        Response(None, status=200, web_socket=WebSocketPair().client)
    pair = WebSocketPair()
    assert Response(None, status=101, webSocket=pair.client).web_socket is pair.client


def test_in_process_pair() -> None:
    client, server = WebSocketPair()
    got: list[object] = []
    server.addEventListener("message", lambda e: got.append(("server", e.data)))
    client.addEventListener("message", lambda e: got.append(("client", e.data)))
    client.addEventListener("close", lambda e: got.append(("close", e.code, e.reason)))
    with pytest.raises(RuntimeError, match="accept"):
        server.send("too early")
    server.accept()
    client.accept()
    client.send("ping")
    server.send(b"pong")
    server.close(4000, "done")
    assert got == [("server", "ping"), ("client", b"pong"), ("close", 4000, "done")]
    with pytest.raises(RuntimeError, match="after close"):
        server.send("late")


def test_events_before_accept_are_kept() -> None:
    client, server = WebSocketPair()
    client.accept()
    client.send("early")
    got: list[object] = []
    server.addEventListener("message", lambda e: got.append(e.data))
    server.accept()
    assert got == ["early"]


def test_close_validation() -> None:
    _, server = WebSocketPair()
    server.accept()
    with pytest.raises(ValueError, match="close code"):
        server.close(999)
    with pytest.raises(ValueError, match="123 bytes"):
        server.close(1000, "x" * 124)


def test_async_close_listener_still_answers_the_close() -> None:
    async def main() -> list[object]:
        client, server = WebSocketPair()
        got: list[object] = []

        async def on_close(event: object) -> None:
            await asyncio.sleep(0)

        server.addEventListener("close", on_close)
        client.addEventListener("close", lambda e: got.append(("client", e.code)))
        server.accept()
        client.accept()
        client.close(4001, "bye")
        for _ in range(5):
            await asyncio.sleep(0)
        return got

    assert asyncio.run(main()) == [("client", 4001)]


def test_headers_reject_non_latin1_values() -> None:
    with pytest.raises(TypeError, match="outside Latin-1"):
        Headers({"X-Name": "Zoë ✓"})
    assert Headers({"X-Name": "Zoë"}).get("x-name") == "Zoë"  # Latin-1 is a ByteString


def test_websocket_constants_on_class_and_instance() -> None:
    # Compiled (mypyc), the WebSocket constants must stay class attributes (ClassVar).
    from stateroom.api.websockets import CloseEvent, ErrorEvent, MessageEvent, WebSocket

    assert (WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED) == (
        0,
        1,
        2,
        3,
    )
    client, _server = WebSocketPair()
    assert (client.OPEN, client.readyState) == (1, 0)
    events = (MessageEvent("x"), CloseEvent(1000, "", True), ErrorEvent(ValueError("e")))
    assert [event.type for event in events] == ["message", "close", "error"]
    assert CloseEvent(1000, "", True).was_clean is True


def test_hot_path_is_compiled_unless_pure_python_was_asked_for() -> None:
    import os

    from stateroom.compiled import HOT_MODULES, compiled_modules, stale_modules

    assert stale_modules() == []
    from stateroom.protocol import frames

    if os.environ.get("STATEROOM_PURE_PYTHON"):
        assert compiled_modules() == []
        assert frames._c_text is None
    else:
        assert compiled_modules() == list(HOT_MODULES)
        assert frames._c_text is not None  # the C unmasking helper was built too


def test_id_from_name_is_stable_past_its_cache() -> None:
    # idFromName caches name -> id; what it returns must not depend on the cache.
    import types

    from stateroom.api import namespace

    ns = namespace.DurableObjectNamespace(types.SimpleNamespace(secret=b"s" * 32))  # type: ignore[arg-type]
    names = [f"room-{i}" for i in range(namespace._NAMED_CACHE + 10)]
    first = [ns.idFromName(n).hex for n in names]
    assert len(ns._named) <= namespace._NAMED_CACHE
    assert [ns.idFromName(n).hex for n in names] == first
    assert len(set(first)) == len(names)
    again = namespace.DurableObjectNamespace(types.SimpleNamespace(secret=b"s" * 32))  # type: ignore[arg-type]
    assert again.idFromName("room-3").hex == first[3]
    assert ns.idFromName("room-3").name == "room-3"
    assert ns.get(ns.idFromName("room-3")) is not None


def test_jurisdiction_subnamespaces_have_their_own_objects() -> None:
    import types

    from stateroom.api import namespace

    objects = types.SimpleNamespace(secret=b"s" * 32, binding="ROOMS")
    ns = namespace.DurableObjectNamespace(objects)  # type: ignore[arg-type]
    eu = ns.jurisdiction("eu")
    assert eu.idFromName("room") == ns.jurisdiction("eu").idFromName("room")
    assert eu.idFromName("room") != ns.idFromName("room")  # another object
    assert eu.idFromName("room") != ns.jurisdiction("fedramp").idFromName("room")
    assert eu.idFromName("room").name == "room"
    # Ids of either kind are ids of this namespace.
    assert ns.idFromString(eu.idFromName("room").toString()) == eu.idFromName("room")
    assert eu.getByName("room", {"locationHint": "weur"}).id == eu.idFromName("room")
    assert len(ns.newUniqueId({"jurisdiction": "eu"}).toString()) == 64
    with pytest.raises(TypeError, match="Unknown jurisdiction 'mars'"):
        ns.jurisdiction("mars")
    with pytest.raises(TypeError, match="Unknown jurisdiction"):
        ns.newUniqueId({"jurisdiction": "mars"})


def test_stub_errors_say_whether_to_retry() -> None:
    from stateroom.api.namespace import _describe
    from stateroom.api.state import DurableObjectAbort
    from stateroom.runtime.gates import GateBrokenError, ObjectResetError

    for error, remote, retryable in [
        (ValueError("user code"), True, False),
        (DurableObjectAbort("bye"), True, False),
        (ObjectResetError("reset under the call"), False, True),
        (GateBrokenError("outputs discarded"), False, True),
    ]:
        _describe(error)
        assert (error.remote, error.retryable, error.overloaded) == (remote, retryable, False)  # type: ignore[attr-defined]
