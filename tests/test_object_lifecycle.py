"""waitUntil, webSocketError, the hibernatable event timeout, the auto-response getter, the
32,768-socket cap and the blockConcurrencyWhile limit, over real sockets (tests/apps/lifecycle).

Work that outlives a response waits on a gate the test opens (``/open/NAME``); an idle
timeout is known to have passed when another object's eviction shows in the log.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator

import pytest
import websockets

from rawws import RawClient, close_frame, frame
from support import RunningServer, fetch, serve

APP = "tests/apps/lifecycle"
WAIT_S = 10.0


@pytest.fixture
def srv() -> Iterator[RunningServer]:
    with serve(
        APP, "--idle-timeout", "0.2", "--hibernation-timeout", "0.2", "--log-level", "debug"
    ) as server:
        yield server


def events(srv: RunningServer) -> list[str]:
    status, body = fetch(srv, "/events")
    assert status == 200, body
    result: list[str] = json.loads(body)
    return result


def wait_events(srv: RunningServer, wanted: str) -> list[str]:
    deadline = time.monotonic() + WAIT_S
    while wanted not in (seen := events(srv)):
        assert time.monotonic() < deadline, f"never saw {wanted!r}: {seen}"
        time.sleep(0.01)
    return seen


def evicted(srv: RunningServer, count: int) -> None:
    """Wait until the log shows ``count`` evictions in all."""
    deadline = time.monotonic() + WAIT_S
    while len(re.findall(r"Evicting idle object", srv.output())) < count:
        assert time.monotonic() < deadline, srv.output()[-3000:]
        time.sleep(0.01)


# -- waitUntil ----------------------------------------------------------------------------


def test_worker_wait_until_runs_after_the_response(srv: RunningServer) -> None:
    assert fetch(srv, "/worker-wait") == (200, "responded")
    assert events(srv) == ["worker responded"]  # the response did not wait for the work
    fetch(srv, "/open/worker")
    assert wait_events(srv, "worker waitUntil done") == [
        "worker responded",
        "worker waitUntil done",
    ]


def test_object_wait_until_keeps_the_object_in_memory(srv: RunningServer) -> None:
    assert fetch(srv, "/obj/a/wait") == (200, "waiting")
    # Another object, idle, is evicted after the idle timeout: by then "a" would have been too.
    assert fetch(srv, "/obj/b/constructed") == (200, "1")
    evicted(srv, 1)
    assert fetch(srv, "/obj/a/constructed") == (200, "1")  # still the same instance
    fetch(srv, "/open/a")
    wait_events(srv, "a waitUntil done")
    evicted(srv, 2)  # once its work is done, "a" is evicted in turn
    assert fetch(srv, "/obj/a/constructed") == (200, "2")


# -- storage calls take effect when made -------------------------------------------------


def test_storage_calls_nobody_awaits_still_happen(srv: RunningServer) -> None:
    assert fetch(srv, "/obj/u/unawaited?hello") == (200, "written")
    # The response left only once the un-awaited write was durable (the output gate).
    assert fetch(srv, "/obj/u/read") == (200, "hello")
    wait_events(srv, "u alarm")  # the un-awaited setAlarm() was set, and fired


# -- hibernatable sockets: webSocketError, event timeout, auto-response ------------------


def test_web_socket_error_then_close_on_a_protocol_error(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port, "/obj/e/ws")
    try:
        assert client.handshake.startswith(b"HTTP/1.1 101 ")
        client.send_text("x")
        assert client.recv_frame() == (0x81, b"echo:x")
        # An unmasked client frame: the runtime fails the connection with 1002.
        client.send(frame(0x1, b"bad", mask=False))
        opcode, payload = client.recv_frame()
        assert opcode == 0x88 and payload[:2] == (1002).to_bytes(2, "big"), payload
    finally:
        client.close()
    seen = wait_events(srv, "e webSocketClose 1002 False")
    errors = [e for e in seen if "webSocketError" in e]
    assert len(errors) == 1 and "Client frames must be masked" in errors[0], seen
    assert seen.index(errors[0]) < seen.index("e webSocketClose 1002 False")


def test_hibernatable_event_timeout_cancels_a_hanging_handler(srv: RunningServer) -> None:
    assert fetch(srv, "/obj/t/timeout") == (200, "None")
    assert fetch(srv, "/obj/t/timeout?50") == (200, "50")

    async def run() -> None:
        async with websockets.connect(f"{srv.ws_url}/obj/t/ws") as ws:
            await ws.send("hang")
            await asyncio.to_thread(wait_events, srv, "t hang ended")
            await ws.send("after")  # the object still takes events
            assert await ws.recv() == "echo:after"

    asyncio.run(run())
    srv.wait_for_log(r"exceeded its 0\.050s timeout")
    # Over 7 days or negative: refused, and the timeout stays as it was; 0 unsets it.
    assert fetch(srv, "/obj/t/timeout?604800001")[0] == 500
    assert fetch(srv, "/obj/t/timeout?-1")[0] == 500
    srv.wait_for_log("the event timeout must be between 0")
    assert fetch(srv, "/obj/t/timeout?50") == (200, "50")
    assert fetch(srv, "/obj/t/timeout?0") == (200, "None")


def test_get_web_sockets_includes_closing_sockets(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port, "/obj/c/ws")
    try:
        assert client.handshake.startswith(b"HTTP/1.1 101 ")
        assert fetch(srv, "/obj/c/count") == (200, "1")
        client.send_text("close-me")
        assert client.recv_frame()[0] == 0x88  # the object's close: the socket is CLOSING
        assert fetch(srv, "/obj/c/count") == (200, "1")  # still listed, as on Cloudflare
        client.send(close_frame(1000))  # the client answers: CLOSED
        wait_events(srv, "c webSocketClose 1000 True")
        assert fetch(srv, "/obj/c/count") == (200, "0")
    finally:
        client.close()


def test_auto_response_getter(srv: RunningServer) -> None:
    assert fetch(srv, "/obj/r/auto") == (200, "ping->pong")
    assert fetch(srv, "/obj/r/auto?clear") == (200, "none")


def test_at_most_32768_hibernatable_sockets_per_object(srv: RunningServer) -> None:
    status, body = fetch(srv, "/obj/cap/cap?32769")
    assert status == 200
    assert body.startswith("32768 accepted; then: acceptWebSocket(): an object may hold at most "
                           "32768 hibernatable WebSockets"), body  # fmt: skip


# -- blockConcurrencyWhile -----------------------------------------------------------------


def test_block_concurrency_while_holds_events_until_it_ends() -> None:
    with serve(APP) as srv:

        async def run() -> tuple[int, str]:
            pending = asyncio.ensure_future(asyncio.to_thread(fetch, srv, "/slow/x"))
            # The constructor ran and closed the gate; the request waits behind it.
            await asyncio.to_thread(wait_events, srv, "slow constructed")
            await asyncio.to_thread(fetch, srv, "/open/slow")
            return await pending

        # Had the request not waited, it would have run before the callback: ready=False.
        assert asyncio.run(run()) == (200, "ready=True constructed=1")


def test_block_concurrency_while_past_its_limit_resets_the_object() -> None:
    with serve(APP, "--block-timeout", "0.2", "--log-level", "debug") as srv:
        status, _ = fetch(srv, "/slow/y")
        assert status == 500  # the event that waited fails with the reset
        srv.wait_for_log(r"Resetting Durable Object .*blockConcurrencyWhile")
        fetch(srv, "/open/slow")  # the next instance's callback finishes at once
        assert fetch(srv, "/slow/y") == (200, "ready=True constructed=2")


def test_a_reset_with_storage_open_resets_once(srv: RunningServer) -> None:
    """The reset breaks the object's output gate; that must not report a failed write and
    reset the object a second time."""
    assert fetch(srv, "/obj/r2/fail-after-write")[0] == 500
    srv.wait_for_log(r"Resetting Durable Object .*boom in blockConcurrencyWhile")
    assert fetch(srv, "/obj/r2/constructed") == (200, "2")  # a new instance, as it should
    log = srv.output()
    assert log.count("Resetting Durable Object") == 1, log[-3000:]
    assert "a storage write failed" not in log, log[-3000:]
