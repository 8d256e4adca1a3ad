"""The WebSocket surface over real sockets (tests/apps/sockets): ``ws.protocol``,
``ws.extensions`` and ``ws.url`` as Cloudflare's WebSocket API has them, and outbound
``fetch()`` and WebSockets from inside an object, ordered by its gates."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import websockets

from support import RunningServer, serve


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with serve("tests/apps/sockets", "--in-memory") as server:
        yield server


async def _props(srv: RunningServer, path: str, **options: Any) -> tuple[dict[str, Any], Any]:
    async with websockets.connect(f"{srv.ws_url}{path}", **options) as ws:
        await ws.send("props")
        return json.loads(await ws.recv()), ws.subprotocol


@pytest.mark.parametrize("path", ["/ws", "/ws-hib"])
def test_protocol_extensions_and_url(srv: RunningServer, path: str) -> None:
    seen, chosen = asyncio.run(_props(srv, path, subprotocols=["chat", "superchat"]))
    assert chosen == "superchat"  # the app's choice went out on the 101
    assert seen["now"]["protocol"] == "superchat"
    assert seen["now"]["extensions"].startswith("permessage-deflate")
    assert seen["now"]["url"] is None  # as on Cloudflare: only outgoing sockets have one
    # Before the 101 left (in fetch), nothing was agreed yet: null, as on Cloudflare.
    assert seen["before"] == {"protocol": None, "extensions": None, "url": None}


def test_none_agreed_reads_empty(srv: RunningServer) -> None:
    seen, chosen = asyncio.run(_props(srv, "/ws", compression=None))
    assert chosen is None
    assert seen["now"] == {"protocol": "", "extensions": "", "url": None}


def get(srv: RunningServer, path: str, data: bytes | None = None) -> Any:
    status, body = _request(srv, path, data)
    assert status == 200, body
    return json.loads(body)


def _request(srv: RunningServer, path: str, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(srv.url + path, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=20) as reply:
        return reply.status, reply.read().decode()


def test_outbound_fetch_from_an_object(srv: RunningServer) -> None:
    seen = get(srv, "/fetch?to=/t/echo")
    assert seen["status"] == 200 and seen["reply_header"] == "yes"
    assert json.loads(seen["body"]) == {"method": "GET", "body": "", "x": "sent"}
    assert seen["url"].endswith("/t/echo") and not seen["redirected"]
    # A POST whose body is the incoming request's own stream, sent on chunked.
    seen = get(srv, "/fetch?to=/t/echo", data=b"payload " * 10_000)
    assert json.loads(seen["body"]) == {"method": "POST", "body": "payload " * 10_000, "x": "sent"}
    # A redirect is followed (303: as a GET); a streamed body is read whole by text().
    seen = get(srv, "/fetch?to=/t/redirect")
    assert json.loads(seen["body"])["method"] == "GET" and seen["redirected"]
    assert get(srv, "/fetch?to=/t/stream")["body"] == "".join(f"part {i};" for i in range(5))
    assert get(srv, "/fetch?to=/t/nothing")["status"] == 404  # a status, not an exception
    _, body = _request(srv, "/fetch-failed")
    assert body.startswith("OSError: fetch http://127.0.0.1:1/nothing")


def test_the_input_gate_stays_open_while_a_fetch_is_pending(srv: RunningServer) -> None:
    """As on Cloudflare: the object's other events run while its outbound request waits."""
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_request, srv, "/fetch-held")
        assert _request(srv, "/ping") == (200, "pong")  # same object, answered meanwhile
        assert _request(srv, "/t/release") == (200, "released")
        assert held.result(20) == (200, "held")


def test_outbound_websocket_from_an_object(srv: RunningServer) -> None:
    seen = get(srv, "/ws-out")
    assert seen["status"] == 101
    assert seen["answer"] == "echo: hello"
    assert seen["url"].startswith("ws://") and seen["url"].endswith("/t/ws")
    assert seen["protocol"] == "p1"


def _echo_frame(srv: RunningServer, text: bytes) -> bytes:
    """The first frame the example answers a masked text frame with, over permessage-deflate."""
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    with socket.create_connection((srv.host, srv.port), timeout=20) as sock:
        sock.sendall(
            b"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, data = data.partition(b"\r\n\r\n")
        assert b"Sec-WebSocket-Extensions: permessage-deflate" in head
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
        sock.sendall(bytes([0x81, 0x80 | len(text)]) + mask + masked)
        while len(data) < 2 or len(data) < 2 + data[1]:
            data += sock.recv(65536)
        return data[: 2 + data[1]]


@pytest.mark.parametrize("threshold", ["64", "0"])
def test_small_messages_compressed_only_with_threshold_0(threshold: str) -> None:
    """workerd compresses every message; stateroom by default those of 64 bytes or more
    (README: the measured cost), and every one with --compress-threshold 0."""
    with serve(
        "examples/websocket-server", "--in-memory", "--compress-threshold", threshold
    ) as srv:
        reply = _echo_frame(srv, b"hi")
    expected = b"[Durable Object]: hi"
    if threshold == "0":
        assert reply[0] == 0xC1  # FIN, RSV1 (compressed), text
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(reply[2:] + b"\x00\x00\xff\xff") == expected
    else:
        assert reply == b"\x81" + bytes([len(expected)]) + expected
