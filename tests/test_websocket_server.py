"""The example app over real sockets: every text, status, route, close code and count."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import Iterator

import pytest
import websockets

from rawws import RawClient, close_frame, frame, http, read_response
from support import RunningServer, serve

# The hibernation twin must behave exactly like the original to a client.
APPS = ["examples/websocket-server", "examples/websocket-hibernation"]
HELP = (
    "\nThis Durable Object supports the following endpoints:\n"
    "  /websocket\n"
    "    - Creates a WebSocket connection. Any messages sent to it are echoed with a prefix.\n"
    "  /getCurrentConnections\n"
    "    - A regular HTTP GET endpoint that returns the number of currently connected"
    " WebSocket clients.\n"
)
TEXT = "Content-Type: text/plain;charset=UTF-8"


@pytest.fixture(scope="module", params=APPS, ids=["listeners", "hibernation"])
def srv(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with serve(request.param, "--hibernation-timeout", "0.2") as server:
        yield server


def get(srv: RunningServer, target: str, method: str = "GET", extra: str = "") -> bytes:
    return http(
        srv.host, srv.port, f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    )


def ok(body: str) -> bytes:
    data = body.encode()
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n{TEXT}\r\n\r\n".encode() + data


def count_text(n: int) -> str:
    if n == 1:
        return "There is 1 WebSocket client connected to this Durable Object instance."
    return f"There are {n} WebSocket clients connected to this Durable Object instance."


def connections(srv: RunningServer) -> int:
    body = get(srv, "/getCurrentConnections").split(b"\r\n\r\n", 1)[1].decode()
    match = re.search(r"There (?:is|are) (\d+) WebSocket", body)
    assert match, body
    return int(match.group(1))


def wait_connections(srv: RunningServer, expected: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (n := connections(srv)) != expected:
        assert time.monotonic() < deadline, f"connections stuck at {n}, expected {expected}"
        time.sleep(0.005)


# -- plain HTTP -----------------------------------------------------------------------


def test_help_text_exact(srv: RunningServer) -> None:
    assert get(srv, "/") == ok(HELP)


def test_counter_text_exact_zero(srv: RunningServer) -> None:
    assert get(srv, "/getCurrentConnections") == ok(count_text(0))


def test_426_without_upgrade(srv: RunningServer) -> None:
    body = b"Durable Object expected Upgrade: websocket"
    assert get(srv, "/websocket") == (
        b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 42\r\n"
        + TEXT.encode()
        + b"\r\n\r\n"
        + body
    )


@pytest.mark.parametrize(
    ("target", "expect"),
    [
        ("/websocket?x=1", "help"),
        ("/websocket/", "help"),
        ("/foo/websocket", "426"),
        ("/websocket#frag", "426"),
        ("/?x=/websocket", "426"),
        ("/getCurrentConnections?x=1", "help"),
        ("/foo/getCurrentConnections", "count"),
        ("/x?/getCurrentConnections", "count"),
        ("http://example.com/getCurrentConnections", "count"),
        ("/anything", "help"),
    ],
)
def test_routing_is_url_suffix(srv: RunningServer, target: str, expect: str) -> None:
    response = get(srv, target)
    if expect == "help":
        assert response == ok(HELP)
    elif expect == "count":
        assert response == ok(count_text(0))
    else:
        assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_method_does_not_change_routing(srv: RunningServer, method: str) -> None:
    extra = "Content-Length: 5\r\n"
    raw = f"{method} / HTTP/1.1\r\nHost: x\r\n{extra}\r\nhello".encode()
    assert http(srv.host, srv.port, raw) == ok(HELP)


def test_head_has_no_body_and_no_length(srv: RunningServer) -> None:
    assert get(srv, "/", "HEAD") == f"HTTP/1.1 200 OK\r\n{TEXT}\r\n\r\n".encode()
    assert get(srv, "/websocket", "HEAD") == (
        f"HTTP/1.1 426 Upgrade Required\r\n{TEXT}\r\n\r\n".encode()
    )


def test_keep_alive_and_pipelining(srv: RunningServer) -> None:
    one = b"GET /getCurrentConnections HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(one)
        first = read_response(sock)
        sock.sendall(one + one)
        second = read_response(sock)
        third = read_response(sock) if second == ok(count_text(0)) else b""
        if not third:
            third = second[len(ok(count_text(0))) :]
            second = second[: len(ok(count_text(0)))]
    assert first == second == third == ok(count_text(0))


def test_connection_close_is_honoured(srv: RunningServer) -> None:
    response = get(srv, "/", extra="Connection: close\r\n")
    assert response == ok(HELP).replace(
        TEXT.encode() + b"\r\n", TEXT.encode() + b"\r\nConnection: close\r\n"
    )


def test_http10(srv: RunningServer) -> None:
    raw = b"GET /getCurrentConnections HTTP/1.0\r\nHost: x\r\n\r\n"
    assert http(srv.host, srv.port, raw) == ok(count_text(0)).replace(b"HTTP/1.1", b"HTTP/1.0")


def test_chunked_request_body(srv: RunningServer) -> None:
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert http(srv.host, srv.port, raw) == ok(HELP)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"GARBAGE\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: 26\r\n\r\ninvalid HTTP method parsed",
        ),
        (
            b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 35\r\n"
            b"Content-Type: text/plain\r\n\r\nERROR: Unrecognized request method.",
        ),
        (
            b"GET / HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
            b"Bad Request",
        ),
    ],
)
def test_malformed_requests(srv: RunningServer, raw: bytes, expected: bytes) -> None:
    assert http(srv.host, srv.port, raw) == expected


def test_oversized_header_and_url(srv: RunningServer) -> None:
    big = "a" * 600_000
    assert get(srv, "/", extra=f"X-Big: {big}\r\n").startswith(
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    )
    assert get(srv, "/" + "a" * 70_000).startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert get(srv, "/", extra=f"X-Ok: {'b' * 100_000}\r\n") == ok(HELP)


# -- handshake ----------------------------------------------------------------------------


def upgrade(srv: RunningServer, method: str = "GET", headers: str = "") -> bytes:
    raw = (
        f"{method} /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\n{headers}\r\n"
    )
    return http(srv.host, srv.port, raw.encode())


def test_handshake_missing_key(srv: RunningServer) -> None:
    assert upgrade(srv, headers="Sec-WebSocket-Version: 13\r\n") == (
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 32\r\n"
        b"Content-Type: text/plain\r\n\r\nERROR: Missing Sec-WebSocket-Key"
    )


@pytest.mark.parametrize("version", ["", "Sec-WebSocket-Version: 12\r\n"])
def test_handshake_bad_version(srv: RunningServer, version: str) -> None:
    assert upgrade(srv, headers=f"Sec-WebSocket-Key: abc\r\n{version}") == (
        b"HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Length: 56\r\n"
        b"Sec-WebSocket-Version: 13\r\nContent-Type: text/plain\r\n\r\n"
        b"ERROR: The requested WebSocket version is not supported."
    )


def test_handshake_post(srv: RunningServer) -> None:
    headers = "Sec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n"
    assert upgrade(srv, "POST", headers) == (
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 54\r\n"
        b"Content-Type: text/plain\r\n\r\nERROR: WebSocket must be initiated with a GET request."
    )


def test_failed_handshakes_leave_counter_exact(srv: RunningServer) -> None:
    upgrade(srv, headers="Sec-WebSocket-Version: 13\r\n")
    upgrade(srv, headers="Sec-WebSocket-Key: abc\r\n")
    wait_connections(srv, 0)


def test_valid_handshake_bytes(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port)
    assert client.handshake == (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    client.close()
    wait_connections(srv, 0)


@pytest.mark.parametrize("spelling", ["WebSocket", "WEBSOCKET"])
def test_upgrade_token_case_insensitive(srv: RunningServer, spelling: str) -> None:
    sock = socket.create_connection((srv.host, srv.port), timeout=5)
    sock.sendall(
        f"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: {spelling}\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    sock.close()
    wait_connections(srv, 0)


# -- echo ----------------------------------------------------------------------------------


def test_echo_exact_frame(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port)
    client.send_text("hello")
    assert client.recv_raw_frame() == b"\x81\x17[Durable Object]: hello"
    client.send_text("")
    assert client.recv_raw_frame() == b"\x81\x12[Durable Object]: "
    client.close()


def test_echo_order_and_isolation(srv: RunningServer) -> None:
    async def run() -> None:
        async with (
            websockets.connect(f"{srv.ws_url}/websocket") as a,
            websockets.connect(f"{srv.ws_url}/websocket") as b,
        ):
            for i in range(200):
                await a.send(f"a{i}")
                await b.send(f"b{i}")
            got_a = [await a.recv() for _ in range(200)]
            got_b = [await b.recv() for _ in range(200)]
            assert got_a == [f"[Durable Object]: a{i}" for i in range(200)]
            assert got_b == [f"[Durable Object]: b{i}" for i in range(200)]

    asyncio.run(run())
    wait_connections(srv, 0)


def test_fragmented_text_and_ping(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port)
    client.send(frame(0x1, b"hel", fin=False) + frame(0x9, b"p") + frame(0x0, b"lo ", fin=False))
    client.send(frame(0x0, b"world"))
    assert client.recv_raw_frame() == b"\x8a\x01p"
    assert client.recv_raw_frame() == b"\x81\x1d[Durable Object]: hello world"
    client.close()


def test_binary_echo_is_prefixed_bytes(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port)
    client.send(frame(0x2, b"\x00\x01\xff"))
    assert client.recv_frame() == (0x82, b"[Durable Object]: \x00\x01\xff")
    client.close()


def test_large_echo_lengths(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port)
    for size in (107, 108, 65517, 65518, 200_000):
        client.send_text("x" * size)
        b0, payload = client.recv_frame()
        assert b0 == 0x81 and payload == b"[Durable Object]: " + b"x" * size
    client.close()


# -- close and the counter -------------------------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(1000, b"bye"), (4000, b""), (1001, b"x")])
def test_close_with_code(srv: RunningServer, code: int, reason: bytes) -> None:
    client = RawClient(srv.host, srv.port)
    wait_connections(srv, 1)
    client.send(close_frame(code, reason))
    expected = struct.pack("!H", code) + b"Durable Object is closing WebSocket"
    assert client.recv_frame() == (0x88, expected)
    assert client.at_eof()
    wait_connections(srv, 0)


def test_close_without_code_gets_empty_close(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port)
    client.send(close_frame())
    assert client.recv_raw_frame() == b"\x88\x00"
    assert client.at_eof()
    wait_connections(srv, 0)


def test_counter_singular_and_plural(srv: RunningServer) -> None:
    a = RawClient(srv.host, srv.port)
    assert get(srv, "/getCurrentConnections") == ok(count_text(1))
    b = RawClient(srv.host, srv.port)
    assert get(srv, "/getCurrentConnections") == ok(count_text(2))
    a.close()
    b.close()
    wait_connections(srv, 0)


def test_counter_after_tcp_drops(srv: RunningServer) -> None:
    clients = [RawClient(srv.host, srv.port) for _ in range(20)]
    wait_connections(srv, 20)
    for c in clients[:10]:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST
    wait_connections(srv, 10)
    for c in clients[10:]:
        c.close()  # FIN
    wait_connections(srv, 0)


@pytest.mark.parametrize(
    ("bad", "code", "reason"),
    [
        (frame(0x1, b"hi", rsv=0x20), 1002, b"Received frame had RSV bits 2 or 3 set"),
        (frame(0x3, b""), 1002, b"Unknown opcode 3"),
        (frame(0x0, b"x"), 1002, b"Unexpected continuation frame"),
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002, b"Missing continuation frame"),
        (frame(0x9, b"", fin=False), 1002, b"Received fragmented control frame"),
        (frame(0x1, b"hello", mask=False), 1002, b"Client frames must be masked"),
        (frame(0x1, b"\xff\xfe"), 1007, b"Invalid UTF-8 in text message"),
    ],
)
def test_protocol_errors_close_and_count(
    srv: RunningServer, bad: bytes, code: int, reason: bytes
) -> None:
    client = RawClient(srv.host, srv.port)
    wait_connections(srv, 1)
    client.send(bad)
    assert client.recv_frame() == (0x88, struct.pack("!H", code) + reason)
    assert client.at_eof()
    wait_connections(srv, 0)  # workerd stays one too high here


def test_32mib_boundary(srv: RunningServer) -> None:
    limit = 32 * 1024 * 1024
    client = RawClient(srv.host, srv.port, timeout=30)
    client.send(frame(0x2, b"\x00" * limit))
    b0, payload = client.recv_frame()
    assert b0 == 0x82 and len(payload) == limit + len("[Durable Object]: ")
    # One byte over: refused from the header alone, before any payload is sent.
    client.send(frame(0x2, b"", length=limit + 1)[:14])
    assert client.recv_frame() == (0x88, b"\x03\xf1Message is too large: 33554433 > 33554432")
    assert client.at_eof()
    wait_connections(srv, 0)


def test_fragmented_message_over_limit(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port, timeout=30)
    first = 20 * 1024 * 1024
    client.send(frame(0x1, b"a" * first, fin=False))
    client.send(frame(0x0, b"", length=13 * 1024 * 1024)[:14])
    assert client.recv_frame() == (0x88, b"\x03\xf1Message is too large: 13631488 > 12582912")
    assert client.at_eof()
    wait_connections(srv, 0)


def test_frames_trickled_one_byte_at_a_time(srv: RunningServer) -> None:
    client = RawClient(srv.host, srv.port)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = frame(0x1, b"hel", fin=False) + frame(0x9, b"p") + frame(0x0, b"lo") + frame(0x1, b"x")
    for i in range(len(data)):
        client.send(data[i : i + 1])
    assert client.recv_raw_frame() == b"\x8a\x01p"
    assert client.recv_raw_frame() == b"\x81\x17[Durable Object]: hello"
    assert client.recv_raw_frame() == b"\x81\x13[Durable Object]: x"
    client.close()
