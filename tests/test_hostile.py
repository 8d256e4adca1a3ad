"""Hostile clients (issue 4): each test attacks a real server, then checks that a
well-behaved client is still served, during the attack where that makes sense and after it.

The target is tests/apps/hostile (the example's echo and counter, plus probes). Limits and
timeouts are set small on the command line so every attack ends in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from rawws import KEY, RawClient, close_frame, frame, http, read_response
from support import RunningServer, serve

APP = "tests/apps/hostile"
MIB = 1024 * 1024
UPGRADE = (
    "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
)
LINGER_RST = struct.pack("ii", 1, 0)


# -- helpers ---------------------------------------------------------------------------


def get(srv: RunningServer, target: str, extra: str = "") -> bytes:
    return http(srv.host, srv.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())


def connections(srv: RunningServer) -> int:
    response = get(srv, "/getCurrentConnections")
    match = re.search(rb"There (?:is|are) (\d+) WebSocket", response)
    assert match, response
    return int(match.group(1))


def wait_connections(srv: RunningServer, expected: int, timeout: float = 5.0) -> float:
    """Poll the object's counter until it reads ``expected``; returns when it did."""
    deadline = time.monotonic() + timeout
    while (n := connections(srv)) != expected:
        assert time.monotonic() < deadline, f"connections stuck at {n}, expected {expected}"
        time.sleep(0.01)
    return time.monotonic()


def served(srv: RunningServer) -> None:
    """A well-behaved client gets an HTTP answer and a WebSocket echo, promptly."""
    response = get(srv, "/version")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"\r\n\r\nv1"), (
        response
    )
    client = RawClient(srv.host, srv.port)
    try:
        assert client.handshake.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        client.send_text("still served")
        assert client.recv_frame() == (0x81, b"[Durable Object]: still served")
        client.send(close_frame(1000))
        assert client.recv_frame()[0] == 0x88
    finally:
        client.close()


def raw_ws(srv: RunningServer, *, rcvbuf: int | None = None, extra: str = "") -> RawClient:
    """A raw WebSocket client; ``rcvbuf`` shrinks its receive buffer before connecting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5.0)
    client = RawClient.__new__(RawClient)
    client.sock = sock
    client.buf = b""
    try:
        sock.connect((srv.host, srv.port))
        sock.sendall(f"{UPGRADE}{extra}\r\n".encode())
        client.handshake = client._read_until(b"\r\n\r\n")
        assert client.handshake.startswith(b"HTTP/1.1 101 "), client.handshake
    except BaseException:
        sock.close()
        raise
    return client


def proc_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def push_until_blocked(
    sock: socket.socket, blob: bytes, max_bytes: int, *, stall_s: float = 0.5, limit_s: float = 20
) -> tuple[int, str]:
    """Send ``blob`` repeatedly without ever reading.

    Returns (bytes sent, how it ended): "blocked" once no byte could be sent for
    ``stall_s``, "closed" if the server dropped the connection, "all" if ``max_bytes``
    went out, "time" at ``limit_s``.
    """
    sock.setblocking(False)
    sent = 0
    view = memoryview(blob)
    offset = 0
    deadline = time.monotonic() + limit_s
    try:
        while sent < max_bytes:
            if time.monotonic() > deadline:
                return sent, "time"
            if not select.select([], [sock], [], stall_s)[1]:
                return sent, "blocked"
            try:
                n = sock.send(view[offset:])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return sent, "closed"
            sent += n
            offset = (offset + n) % len(blob)
        return sent, "all"
    finally:
        sock.settimeout(5.0)


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``timeout`` passes (False)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return data, False
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def closed_within(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closes ``sock`` (reading what it sends), or None."""
    start = time.monotonic()
    _, closed = read_until_closed(sock, timeout)
    return time.monotonic() - start if closed else None


def expect_failure(client: RawClient, code: int, reason: bytes | None = None) -> None:
    """The server sent a close frame with ``code`` (and ``reason``) and closed the TCP."""
    b0, payload = client.recv_frame()
    assert b0 == 0x88, (b0, payload)
    assert payload[:2] == struct.pack("!H", code), payload
    if reason is not None:
        assert payload[2:] == reason
    assert client.at_eof()


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    """A server with default options (small message limit) for the protocol attacks."""
    with serve(APP, "--max-message-size", "4096") as server:
        yield server


@pytest.fixture(autouse=True)
def _check_no_traceback(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "srv" in request.fixturenames:
        server: RunningServer = request.getfixturevalue("srv")
        assert "Traceback" not in server.output(), server.output()[-4000:]


# -- slowloris -------------------------------------------------------------------------

SLOW_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000


def test_slowloris_head_trickled_is_cut_at_header_timeout() -> None:
    with serve(APP, "--header-timeout", "1") as srv:
        slow = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(10)]
        silent = socket.create_connection((srv.host, srv.port), timeout=5)  # sends nothing
        started = time.monotonic()
        closed_at: dict[int, float] = {}
        sent = 0
        checks = 0
        deadline = started + 6.0
        while len(closed_at) < len(slow) + 1 and time.monotonic() < deadline:
            open_socks = [s for s in [*slow, silent] if s.fileno() not in closed_at]
            # Pace the trickle by waiting (at most 50 ms) for the server to close something.
            readable = select.select(open_socks, [], [], 0.05)[0]
            for s in readable:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed_at[s.fileno()] = time.monotonic() - started
            for s in slow:
                if s.fileno() not in closed_at:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        s.send(SLOW_HEAD[sent : sent + 1])
            sent += 1
            if checks < 3 and time.monotonic() - started > 0.3 * (checks + 1):
                served(srv)  # others are served while the attack goes on
                checks += 1
        try:
            assert len(closed_at) == len(slow) + 1, (
                f"{len(slow) + 1 - len(closed_at)} of {len(slow) + 1} slow clients still "
                f"connected after {time.monotonic() - started:.1f}s (--header-timeout 1); "
                f"closed after: {sorted(closed_at.values())}"
            )
            # Cut by the header timeout: not at once, and not reset by each byte.
            assert all(0.5 <= t <= 3.5 for t in closed_at.values()), sorted(closed_at.values())
        finally:
            for s in [*slow, silent]:
                s.close()
        served(srv)


def test_slowloris_on_the_next_request_of_a_keep_alive_connection() -> None:
    with serve(APP, "--header-timeout", "1", "--keep-alive-timeout", "30") as srv:
        one = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
        slow = socket.create_connection((srv.host, srv.port), timeout=5)
        idle = socket.create_connection((srv.host, srv.port), timeout=5)
        try:
            for s in (slow, idle):
                s.sendall(one)
                assert read_response(s).endswith(b"v1")
            started = time.monotonic()
            closed = None
            for i in range(200):  # at most 200 bytes, ~10 s
                readable = select.select([slow, idle], [], [], 0.05)[0]
                assert idle not in readable, "idle keep-alive connection closed by header timeout"
                if slow in readable:
                    _, eof = read_until_closed(slow, 0.1)
                    if eof:
                        closed = time.monotonic() - started
                        break
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    slow.send(SLOW_HEAD[i : i + 1])
            assert closed is not None, "trickled second request was never cut"
            assert 0.5 <= closed <= 3.5, closed
            # The idle connection (no byte of a next request) is governed by the
            # keep-alive timeout, so it still works.
            idle.sendall(one)
            assert read_response(idle).endswith(b"v1")
        finally:
            slow.close()
            idle.close()
        served(srv)


def test_slowloris_behind_a_slow_pipelined_request() -> None:
    # The next request's head starts while the first is still being answered: once the
    # answer is out, the rest of that head still has only the header timeout.
    with serve(APP, "--header-timeout", "1", "--keep-alive-timeout", "30") as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHo")
            assert read_response(sock).endswith(b"slow done")
            assert closed_within(sock, 4.0) is not None, "unfinished head was never cut"
        served(srv)


# -- clients that do not read -------------------------------------------------------------


def test_http_client_that_never_reads_its_responses() -> None:
    # 400 pipelined requests for 256 KiB answers (100 MiB), never read: the server stops
    # answering (and reading) once its send buffer is full, so its memory stays flat.
    with serve(APP) as srv:
        before = proc_kib(srv.pid, "VmRSS")
        with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            request = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
            with contextlib.suppress(BlockingIOError):
                for _ in range(400):
                    sock.send(request)
            served(srv)  # others are answered meanwhile
            grown = proc_kib(srv.pid, "VmRSS") - before
            assert grown < 20 * 1024, f"server grew by {grown} KiB for an unread client"
        served(srv)


def test_client_that_never_reads_is_backpressured_then_dropped() -> None:
    with serve(APP, "--send-timeout", "2", "--max-message-size", str(MIB)) as srv:
        served(srv)
        before = proc_kib(srv.pid, "VmHWM")
        bad = raw_ws(srv, rcvbuf=4096)
        wait_connections(srv, 1)
        message = frame(0x2, os.urandom(64 * 1024))  # each one echoed, 64 KiB back
        sent, how = push_until_blocked(bad.sock, message * 16, 256 * MIB)
        try:
            assert how in ("blocked", "closed"), (how, sent)
            # The server stopped reading: the client could not push the whole 256 MiB.
            assert sent < 48 * MIB, sent
            served(srv)  # served while the bad client is stuck
            growth = proc_kib(srv.pid, "VmHWM") - before
            assert growth < 40 * 1024, f"server RSS peak grew by {growth} KiB"
            # Dropped after --send-timeout (2 s) of not reading.
            wait_connections(srv, 0, timeout=8)
            assert bad.at_eof(timeout=5)
        finally:
            bad.close()
        served(srv)


def test_broadcast_to_a_client_that_never_reads_hits_max_send_buffer() -> None:
    args = ("--send-timeout", "30", "--max-send-buffer", str(4 * MIB))
    with serve(APP, *args) as srv:
        served(srv)
        before = proc_kib(srv.pid, "VmHWM")
        bad = raw_ws(srv, rcvbuf=4096)
        try:
            wait_connections(srv, 1)
            bad.send_text("blast 64 1048576")  # the object sends it 64 MiB it won't read
            # Closed for the buffer limit, long before the 30 s send timeout.
            wait_connections(srv, 0, timeout=10)
            growth = proc_kib(srv.pid, "VmHWM") - before
            assert growth < 40 * 1024, f"server RSS peak grew by {growth} KiB"
        finally:
            bad.close()
        served(srv)


def test_ping_flood_without_reading_pongs() -> None:
    with serve(APP, "--send-timeout", "2") as srv:
        served(srv)
        before = proc_kib(srv.pid, "VmHWM")
        bad = raw_ws(srv, rcvbuf=4096)
        wait_connections(srv, 1)
        ping = frame(0x9, b"p" * 125)
        blob = ping * 8000  # ~1 MiB of pings per round
        sent, how = push_until_blocked(bad.sock, blob, 128 * MIB)
        try:
            pings = sent // len(ping)
            assert pings > 2000, f"only {pings} pings went out before {how}"
            assert how in ("blocked", "closed"), (how, sent)
            assert sent < 64 * MIB, sent
            served(srv)
            growth = proc_kib(srv.pid, "VmHWM") - before
            assert growth < 40 * 1024, f"server RSS peak grew by {growth} KiB"
            wait_connections(srv, 0, timeout=8)
        finally:
            bad.close()
        served(srv)


# -- connection floods ------------------------------------------------------------------


def test_flood_of_connects_and_drops_leaves_nothing_behind() -> None:
    with serve(APP) as srv:
        served(srv)
        baseline_fds = fd_count(srv.pid)
        held: list[socket.socket] = []
        started = time.monotonic()
        try:
            for i in range(300):
                assert time.monotonic() - started < 30, "flood took too long"
                s = socket.create_connection((srv.host, srv.port), timeout=5)
                kind = i % 6
                if kind == 0:  # connect, FIN
                    s.close()
                elif kind == 1:  # connect, RST
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                    s.close()
                elif kind == 2:  # half a request head, then held open
                    s.sendall(b"GET / HTTP/1.1\r\nHo")
                    held.append(s)
                elif kind == 3:  # upgrade request, FIN before reading the 101
                    s.sendall(f"{UPGRADE}\r\n".encode())
                    s.close()
                elif kind == 4:  # upgrade request, RST before reading the 101
                    s.sendall(f"{UPGRADE}\r\n".encode())
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                    s.close()
                else:  # a WebSocket, half a frame, then half-closed (SHUT_WR)
                    s.sendall(f"{UPGRADE}\r\n".encode())
                    assert s.recv(4096).startswith(b"HTTP/1.1 101 ")
                    s.sendall(frame(0x1, b"hello")[:4])
                    s.shutdown(socket.SHUT_WR)
                    held.append(s)
            served(srv)  # served with the half-open ones still there
        finally:
            for j, s in enumerate(held):
                if j % 2:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                s.close()
        wait_connections(srv, 0, timeout=15)
        served(srv)
        deadline = time.monotonic() + 10
        while (fds := fd_count(srv.pid)) > baseline_fds + 2:
            assert time.monotonic() < deadline, f"server holds {fds} fds, {baseline_fds} before"
            time.sleep(0.02)
        assert "Traceback" not in srv.output(), srv.output()[-4000:]


def test_too_many_connections_get_503() -> None:
    limit = 8
    with serve(APP, "--max-connections", str(limit)) as srv:
        # Idle ones first: the later ones being answered shows the server accepted them.
        fresh = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(2)]
        keep_alive = []
        for _ in range(3):
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s).endswith(b"v1")
            keep_alive.append(s)
        websockets = [raw_ws(srv) for _ in range(3)]
        try:
            # 8 connections are open: every next one is refused, and refusals free their slot.
            for _ in range(20):
                answer = over_limit(srv)
                assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
            # The 8 are still served.
            for i, ws in enumerate(websockets):
                ws.send_text(f"m{i}")
                assert ws.recv_frame() == (0x81, f"[Durable Object]: m{i}".encode())
            for s in keep_alive:
                s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(s).endswith(b"v1")
            # One leaves: its slot is free again (the server notices asynchronously).
            fresh.pop().close()
            deadline = time.monotonic() + 5
            while True:
                response = get(srv, "/version")
                if response.startswith(b"HTTP/1.1 200 OK\r\n"):
                    break
                assert response.startswith(b"HTTP/1.1 503 "), response
                assert time.monotonic() < deadline, "slot never freed"
                time.sleep(0.02)
        finally:
            for ws in websockets:
                ws.close()
            for s in keep_alive + fresh:
                s.close()
        # Every slot comes back: `limit` WebSockets at once work again, the next is refused.
        deadline = time.monotonic() + 5
        again: list[RawClient] = []
        try:
            while len(again) < limit:
                try:
                    again.append(raw_ws(srv))
                except (AssertionError, OSError):
                    assert time.monotonic() < deadline, f"only {len(again)} of {limit} slots"
                    time.sleep(0.02)
            assert over_limit(srv).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        finally:
            for ws in again:
                ws.close()


def over_limit(srv: RunningServer) -> bytes:
    """Open one connection, ask for something, read the answer until the server closes."""
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = read_until_closed(s, 5)
        assert closed, f"refused connection left open: {data!r}"
        return data


# -- oversized and malformed heads --------------------------------------------------------


def test_too_many_and_too_large_headers_get_431() -> None:
    with serve(APP, "--max-header-size", "4096", "--max-headers", "20") as srv:
        many = "".join(f"X-H{i}: v\r\n" for i in range(19))  # + Host = 20 lines
        assert get(srv, "/version", many).endswith(b"v1")
        too_many = many + "X-H19: v\r\n"  # 21 lines
        answer = get(srv, "/version", too_many)
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer
        assert get(srv, "/version", f"X-Big: {'b' * 3000}\r\n").endswith(b"v1")
        answer = get(srv, "/version", f"X-Big: {'b' * 5000}\r\n")
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer
        served(srv)


@pytest.mark.parametrize(
    "head",
    [
        # Header lines without end: refused at the 21st, not after the client stops.
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(1000)),
        # One header value without end, already over --max-header-size.
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 8192,
    ],
    ids=["endless-header-lines", "endless-header-value"],
)
def test_unfinished_oversized_head_gets_431_without_waiting(head: bytes) -> None:
    with serve(APP, "--max-header-size", "4096", "--max-headers", "20") as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(head)
            data, closed = read_until_closed(s, 5)
        assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), (data, closed)
        assert closed
        served(srv)


@pytest.mark.parametrize(
    "tail",
    [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"],
    ids=["parser-error", "no-host"],
)
@pytest.mark.parametrize("target", ["/version", "/slow"])
def test_bad_pipelined_request_does_not_drop_the_answer_before_it(
    srv: RunningServer, target: str, tail: bytes
) -> None:
    """Responses go out in request order (RFC 9112 9.3.2): a valid request followed in the
    same packet by a bad one is answered first; then the error, then the close."""
    expected = b"v1" if target == "/version" else b"slow done"
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + tail)
        data, closed = read_until_closed(s, 5)
    assert closed
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), data
    assert rest.startswith(expected), data
    error = rest[len(expected) :]
    assert error == b"" or re.match(rb"HTTP/1\.1 (400|501) ", error), data
    served(srv)


# -- keep-alive --------------------------------------------------------------------------


def test_keep_alive_idle_timeout() -> None:
    with serve(APP, "--keep-alive-timeout", "1", "--header-timeout", "30") as srv:
        one = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:
            s.sendall(one)
            assert read_response(s).endswith(b"v1")
            # Idle for less than the timeout: still open, and the next request works.
            assert not select.select([s], [], [], 0.6)[0], "closed before the keep-alive timeout"
            s.sendall(one)
            assert read_response(s).endswith(b"v1")
            after = closed_within(s, 5)
        assert after is not None, "idle keep-alive connection never closed"
        assert 0.6 <= after <= 3.5, after
        served(srv)


def test_timeouts_do_not_cut_a_slow_response() -> None:
    with serve(APP, "--keep-alive-timeout", "0.3", "--header-timeout", "0.3") as srv:
        # /slow answers after 0.5 s: neither timeout may cut a request being handled.
        response = get(srv, "/slow")
        assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"slow done")
        served(srv)


# -- WebSocket framing attacks ------------------------------------------------------------


@pytest.mark.parametrize("length", [2**63, 2**64 - 1])
@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_frame_length_with_most_significant_bit(
    srv: RunningServer, length: int, opcode: int
) -> None:
    client = raw_ws(srv)
    client.send(bytes([0x80 | opcode, 0xFF]) + struct.pack("!Q", length) + b"\x00" * 4)
    expect_failure(client, 1002)
    client.close()
    wait_connections(srv, 0)
    served(srv)


def test_frame_length_just_under_2_63_is_too_big(srv: RunningServer) -> None:
    client = raw_ws(srv)
    client.send(b"\x82\xff" + struct.pack("!Q", 2**63 - 1) + b"\x00" * 4)
    expect_failure(client, 1009, b"Message is too large: 9223372036854775807 > 4096")
    client.close()
    served(srv)


@pytest.mark.parametrize(
    "bad",
    [
        frame(0x9, b"", fin=False),
        frame(0xA, b"x", fin=False),
        frame(0x8, b"\x03\xe8", fin=False),
        frame(0x1, b"a", fin=False) + frame(0x9, b"p", fin=False) + frame(0x0, b"b"),
    ],
    ids=["ping", "pong", "close", "ping-inside-message"],
)
def test_fragmented_control_frames(srv: RunningServer, bad: bytes) -> None:
    client = raw_ws(srv)
    client.send(bad)
    expect_failure(client, 1002, b"Received fragmented control frame")
    client.close()
    wait_connections(srv, 0)
    served(srv)


def test_oversized_message_refused_before_its_payload(srv: RunningServer) -> None:
    exact = raw_ws(srv)
    exact.send(frame(0x2, b"\x07" * 4096))
    assert exact.recv_frame() == (0x82, b"[Durable Object]: " + b"\x07" * 4096)
    exact.close()
    for head, reason in [
        (frame(0x2, b"", length=4097)[:8], b"Message is too large: 4097 > 4096"),
        (frame(0x1, b"", length=2**40)[:14], b"Message is too large: 1099511627776 > 4096"),
        (
            frame(0x1, b"a" * 3000, fin=False) + frame(0x0, b"", length=2000)[:8],
            b"Message is too large: 2000 > 1096",
        ),
    ]:
        client = raw_ws(srv)
        client.send(head)  # the header only: the payload is never sent
        expect_failure(client, 1009, reason)
        client.close()
    wait_connections(srv, 0)
    served(srv)


@pytest.mark.parametrize(
    "bad",
    [
        frame(0x1, b"\xff\xfe"),
        frame(0x1, b"\xc0\xaf"),  # overlong "/"
        frame(0x1, b"\xed\xa0\x80"),  # a UTF-16 surrogate
        frame(0x1, b"\xf4\x90\x80\x80"),  # above U+10FFFF
        frame(0x1, b"ok\xe2\x82"),  # truncated at the end
        frame(0x1, b"ab\xe2", fin=False) + frame(0x0, b"\x82", fin=False) + frame(0x0, b"\x28"),
        # Invalid in the first fragment: refused before the message ends.
        frame(0x1, b"\xc3\x28", fin=False),
    ],
    ids=["ff-fe", "overlong", "surrogate", "too-high", "truncated", "across", "fail-fast"],
)
def test_invalid_utf8_closes_1007(srv: RunningServer, bad: bytes) -> None:
    client = raw_ws(srv)
    client.send(bad)
    expect_failure(client, 1007, b"Invalid UTF-8 in text message")
    client.close()
    wait_connections(srv, 0)
    served(srv)


def test_invalid_utf8_in_close_reason_closes_1007(srv: RunningServer) -> None:
    client = raw_ws(srv)
    client.send(close_frame(1000, b"\xff"))
    expect_failure(client, 1007)
    client.close()
    wait_connections(srv, 0)
    served(srv)


@pytest.mark.parametrize(
    "bad",
    [
        frame(0x1, b"hello", mask=False),
        frame(0x2, b"\x00\x01", mask=False),
        frame(0x9, b"ping", mask=False),
        frame(0x8, b"\x03\xe8", mask=False),
        frame(0x1, b"he", fin=False) + frame(0x0, b"llo", mask=False),
    ],
    ids=["text", "binary", "ping", "close", "continuation"],
)
def test_unmasked_frames_close_1002(srv: RunningServer, bad: bytes) -> None:
    client = raw_ws(srv)
    client.send(bad)
    expect_failure(client, 1002, b"Client frames must be masked")
    client.close()
    wait_connections(srv, 0)
    served(srv)


# -- origin check -------------------------------------------------------------------------


def upgrades_seen(srv: RunningServer) -> int:
    response = get(srv, "/stats")
    return int(json.loads(response.split(b"\r\n\r\n", 1)[1])["upgrades"])


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "null", "http://good.example.evil.example", "https://good.example"],
)
def test_origin_not_allowed_gets_403_and_app_never_runs(srv: RunningServer, origin: str) -> None:
    before = upgrades_seen(srv)
    raw = f"{UPGRADE}Origin: {origin}\r\n\r\n".encode()
    with socket.create_connection((srv.host, srv.port), timeout=5) as s:
        s.sendall(raw)
        data, _ = read_until_closed(s, 5)
    assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n"), data
    assert upgrades_seen(srv) == before, "the Worker ran for a refused origin"
    assert connections(srv) == 0
    served(srv)


def test_allowed_origin_and_no_origin_may_upgrade(srv: RunningServer) -> None:
    before = upgrades_seen(srv)
    good = raw_ws(srv, extra="Origin: http://good.example\r\n")
    good.send_text("hi")
    assert good.recv_frame() == (0x81, b"[Durable Object]: hi")
    good.close()
    none = raw_ws(srv)  # a non-browser client sends no Origin
    none.close()
    assert upgrades_seen(srv) == before + 2
    # Only WebSocket upgrades are checked: plain requests from any origin are answered.
    response = get(srv, "/version", "Origin: http://evil.example\r\n")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"v1")
    wait_connections(srv, 0)
