"""Request desynchronisation (issue 18): raw bytes in, and what the application saw out.

Each test sends bytes a real client, a proxy or an attacker could send, over a raw socket to
``stateroom serve tests/apps/recorder``, half-closes, reads until the server closes, and then
asks the app which requests it was given. A status code alone would not catch a request
that is answered correctly *and* smuggles a second one to the app, nor a fix that refuses
too much: every test pins both the bytes on the wire and the app's record.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawws import KEY, close_frame
from support import RunningServer, serve

APP = "tests/apps/recorder"
READ_BOUND_S = 5.0
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")

Seen = list[list[str]]


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with serve(APP) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(srv: RunningServer) -> None:
    seen(srv)  # each test starts with an empty record


def talk(srv: RunningServer, raw: bytes, *, shut: bool = True) -> bytes:
    """Send ``raw``, half-close, and read until the server closes the connection.

    The server answers every complete request before it, then closes (a half-closed client
    can send no more), so once this returns the app has been given all it will be given.
    """
    with socket.create_connection((srv.host, srv.port), timeout=READ_BOUND_S) as sock:
        sock.sendall(raw)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        deadline = time.monotonic() + READ_BOUND_S
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                return data
            data += chunk
        raise AssertionError(f"the server did not close within {READ_BOUND_S}s: {data!r}")


def seen(srv: RunningServer) -> Seen:
    """What the app was given since the last call, as [method, url, body] lists."""
    raw = f"GET /__seen?clear HTTP/1.1\r\nHost: {srv.host}\r\nConnection: close\r\n\r\n"
    data = talk(srv, raw.encode(), shut=False)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    record: Seen = json.loads(data.partition(b"\r\n\r\n")[2])
    return record


def statuses(data: bytes) -> list[int]:
    return [int(m.group(1)) for m in STATUS.finditer(data)]


def url(path: str) -> str:
    return f"http://x{path}"


# -- 1. request smuggling through a refused upgrade ------------------------------------------

SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        # The probe: any Upgrade, Connection: Upgrade, a Content-Length body.
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
        b"Content-Length: %d\r\n\r\n" % len(SMUGGLED),
        # The same with a WebSocket upgrade the app refuses, and a GET.
        b"GET /refuse HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n"
        b"Content-Length: %d\r\n\r\n" % len(SMUGGLED),
        # Chunked: the body is a chunk holding the smuggled request.
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED),
    ],
    ids=["content-length", "websocket refused", "chunked"],
)
def test_upgrade_request_body_is_never_a_request(srv: RunningServer, head: bytes) -> None:
    tail = b"\r\n0\r\n\r\n" if b"chunked" in head else b""
    data = talk(srv, head + SMUGGLED + tail)
    assert statuses(data) == [400], data
    assert data.endswith(b"ERROR: An upgrade request must not have a body."), data
    assert seen(srv) == []


def test_refused_upgrade_without_body_keeps_pipelining(srv: RunningServer) -> None:
    """Bytes after a bodiless upgrade request the app refused are the next request."""
    data = talk(
        srv,
        b"GET /refuse HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert statuses(data) == [403, 200], data
    assert seen(srv) == [["GET", url("/refuse"), ""], ["GET", url("/second"), ""]]


def test_upgrade_with_empty_body_is_a_request(srv: RunningServer) -> None:
    data = talk(
        srv,
        b"POST /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
        b"Content-Length: 0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert statuses(data) == [200, 200], data
    assert seen(srv) == [["POST", url("/a"), ""], ["GET", url("/b"), ""]]


# -- 2. Host -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hosts",
    [
        b"Host: h/admin?\r\n",
        b"Host: h#\r\n",
        b"Host: h?\r\n",
        b"Host: a@b\r\n",
        b"Host: a b\r\n",
        b"Host: h\\x\r\n",
        b"Host: a\r\nHost: b\r\n",
        b"Host: a\r\nHost: a\r\n",
        b"Host:\r\n",
        b"",
    ],
)
def test_bad_or_repeated_host_is_400_and_never_reaches_the_app(
    srv: RunningServer, hosts: bytes
) -> None:
    data = talk(
        srv, b"GET /public HTTP/1.1\r\n" + hosts + b"\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert statuses(data) == [400], data
    assert seen(srv) == []


@pytest.mark.parametrize(
    ("target", "host", "expected"),
    [
        (b"/p?q=1", b"H.Example:8080", "http://h.example:8080/p?q=1"),
        (b"/p", b"[::1]:8787", "http://[::1]:8787/p"),
        (b"http://a.example/p", b"x", "http://a.example/p"),
        (b"/websocket#frag", b"x", "http://x/websocket"),
    ],
)
def test_url_from_host_and_target(
    srv: RunningServer, target: bytes, host: bytes, expected: str
) -> None:
    data = talk(srv, b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert statuses(data) == [200], data
    assert seen(srv) == [["GET", expected, ""]]


@pytest.mark.parametrize(
    "target",
    [b"http://user@a.example/p", b"ftp://a/p", b"http://a b/", b"*", b"http:/a"],
)
def test_bad_target_is_400_in_one_short_log_line_at_most(srv: RunningServer, target: bytes) -> None:
    before = srv.output()
    data = talk(srv, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(data) == [400], data
    assert seen(srv) == []
    logged = srv.output()[len(before) :]
    assert "Traceback" not in logged and "ERROR" not in logged, logged


def test_connect_is_400_without_traceback(srv: RunningServer) -> None:
    before = srv.output()
    data = talk(
        srv, b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\nGET / HTTP/1.1\r\n"
    )
    assert statuses(data) == [400], data
    assert seen(srv) == []
    logged = srv.output()[len(before) :]
    assert "Traceback" not in logged and "ERROR" not in logged, logged


# -- 3. paths: passed as sent --------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/a/../x",
        "/.%2e/x",
        "/%2e%2e/x",
        "/%2e/x",
        "/%2E%2E/x",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/./admin",
        "/a/b/..",
        "//x/../y",
        "/%2fadmin",
    ],
)
def test_paths_reach_the_app_as_sent(srv: RunningServer, path: str) -> None:
    """One policy for every spelling: no dot-segment normalisation (what workerd does)."""
    data = talk(srv, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert statuses(data) == [200], data
    assert seen(srv) == [["GET", url(path), ""]]


# -- 4. the opening handshake --------------------------------------------------------------

UP = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
GOOD_KEY = f"Sec-WebSocket-Key: {KEY}\r\n"
V13 = "Sec-WebSocket-Version: 13\r\n"


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        ("Upgrade: websocket\r\n" + GOOD_KEY + V13, "1.1"),  # no Connection: Upgrade
        ("Upgrade: websocket\r\nConnection: keep-alive\r\n" + GOOD_KEY + V13, "1.1"),
        ("Connection: Upgrade\r\n" + GOOD_KEY + V13, "1.1"),  # no Upgrade
        (UP + "Sec-WebSocket-Key: abc\r\n" + V13, "1.1"),
        (UP + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE=\r\n" + V13, "1.1"),
        (UP + GOOD_KEY + GOOD_KEY + V13, "1.1"),
        (UP + GOOD_KEY + V13, "1.0"),
    ],
    ids=["no-connection", "connection-keep-alive", "no-upgrade", "short-key", "17-byte-key",
         "two-keys", "http-1.0"],
)  # fmt: skip
def test_handshake_refused_before_any_101(srv: RunningServer, headers: str, version: str) -> None:
    """The app accepted (it always does on /ws); the runtime still refuses, before a 101,
    and the frames the client sent next are not read as HTTP."""
    raw = f"GET /ws HTTP/{version}\r\nHost: x\r\n{headers}\r\n".encode() + close_frame(1000)
    data = talk(srv, raw)
    assert statuses(data) == [400], data
    assert b" 101 " not in data
    assert seen(srv) == [["GET", url("/ws"), ""]]


def test_valid_handshake_still_upgrades(srv: RunningServer) -> None:
    raw = f"GET /ws HTTP/1.1\r\nHost: x\r\n{UP}{GOOD_KEY}{V13}\r\n".encode() + close_frame(1000)
    data = talk(srv, raw)
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), data
    assert data.endswith(b"\x88\x02\x03\xe8"), data  # the close answered
    assert seen(srv) == [["GET", url("/ws"), ""]]


# -- 5. framing: close after HTTP/1.0 with Transfer-Encoding; 100 Continue in turn ---------


def test_http10_with_transfer_encoding_closes_after_its_answer(srv: RunningServer) -> None:
    data = talk(
        srv,
        b"POST /one HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert statuses(data) == [200], data
    assert b"Connection: keep-alive" not in data
    assert seen(srv) == [["POST", url("/one"), "hello"]]


def test_nothing_after_connection_close_reaches_the_app(srv: RunningServer) -> None:
    data = talk(
        srv,
        b"GET /one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert statuses(data) == [200], data
    assert seen(srv) == [["GET", url("/one"), ""]]


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def test_100_continue_waits_for_the_answer_before_it(srv: RunningServer) -> None:
    with socket.create_connection((srv.host, srv.port), timeout=READ_BOUND_S) as sock:
        sock.sendall(
            b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        # Once the app holds /hold, the server has read both heads (one write, one read):
        # a 100 Continue sent on reading the second head would already be here.
        deadline = time.monotonic() + READ_BOUND_S
        while not seen_without_clearing(srv):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not _readable(sock, 0.2), sock.recv(4096)
        talk(srv, b"GET /release HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"100 Continue\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"held" in data, data
        assert data.endswith(b"HTTP/1.1 100 Continue\r\n\r\n"), data
        sock.sendall(b"hello")
        sock.shutdown(socket.SHUT_WR)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert statuses(rest) == [200] and rest.endswith(b"seen POST http://x/body 5"), rest
    assert [entry[1] for entry in seen(srv)] == [url("/hold"), url("/release"), url("/body")]


def seen_without_clearing(srv: RunningServer) -> Seen:
    raw = f"GET /__seen HTTP/1.1\r\nHost: {srv.host}\r\nConnection: close\r\n\r\n".encode()
    record: Seen = json.loads(talk(srv, raw, shut=False).partition(b"\r\n\r\n")[2])
    return record


# -- 6. what was already refused stays refused ------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        # Content-Length and Transfer-Encoding together (CL.TE / TE.CL).
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
        # Two Content-Lengths that differ; a bad one.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 30\r\n\r\n" + SMUGGLED,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +30\r\n\r\n" + SMUGGLED,
        # Transfer-Encoding other than chunked last, obfuscated, or in obs-fold.
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n" + SMUGGLED,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n"
        + SMUGGLED,
        # Bad chunk sizes and chunk framing.
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n" + SMUGGLED,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabcX\r\n0\r\n\r\n" + SMUGGLED,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffff\r\n" + SMUGGLED,
        # Line endings and control bytes.
        b"GET / HTTP/1.1\nHost: x\n\n" + SMUGGLED,
        b"GET / HTTP/1.1\rHost: x\r\r" + SMUGGLED,
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n" + SMUGGLED,
        # Versions: HTTP/0.9, HTTP/2's preface, nonsense.
        b"GET /\r\n\r\n" + SMUGGLED,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SMUGGLED,
        b"GET / HTTP/1.2\r\nHost: x\r\n\r\n" + SMUGGLED,
    ],
)
def test_framing_attacks_are_refused_and_the_app_sees_nothing(
    srv: RunningServer, raw: bytes
) -> None:
    data = talk(srv, raw)
    assert statuses(data) in ([400], [501], []), data  # [] : the HTTP/2 preface, hung up on
    assert seen(srv) == []


def test_pipelined_requests_all_reach_the_app_in_order(srv: RunningServer) -> None:
    raw = b"".join(
        [
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nde\r\n0\r\n\r\n",
            b"GET /4 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
            b"HEAD /5 HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
    )
    data = talk(srv, raw)
    assert statuses(data) == [200] * 5, data
    assert seen(srv) == [
        ["GET", url("/1"), ""],
        ["POST", url("/2"), "abc"],
        ["POST", url("/3"), "de"],
        ["GET", url("/4"), ""],
        ["HEAD", url("/5"), ""],
    ]


# -- the fuzz target: the app never sees more requests than were well-formed -----------------


def _well_formed(i: int) -> st.SearchStrategy[bytes]:
    path = f"/wf/{i}".encode()
    return st.sampled_from(
        [
            b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok",
            b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        ]
    )


def _hostile(i: int) -> st.SearchStrategy[tuple[bytes, bool]]:
    """Requests that carry a well-formed request where a body, a header or garbage is,
    which the app must never be given; True where the request itself is well-formed (and
    ends the connection), so the app may see it, as ``/wf/i``."""
    inner = b"GET /smuggled/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
    n = b"%d" % len(inner)
    path = b"/wf/%d" % i
    return st.sampled_from(
        [
            (b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
             b"Content-Length: " + n + b"\r\n\r\n" + inner, False),
            (b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n",
             False),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked"
             b"\r\n\r\n0\r\n\r\n" + inner, False),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: "
             + n + b"\r\n\r\n" + inner, False),
            (b"GET / HTTP/1.1\r\nHost: x/" + inner[4:], False),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + inner, False),
            (b"\x00\x01garbage " + inner, False),
            (b"GET " + path + b" HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
             b"Connection: keep-alive\r\nHost: x\r\n\r\n0\r\n\r\n" + inner, True),
            (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + inner,
             True),
        ]
    )  # fmt: skip


@st.composite
def pipelined_stream(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """Some requests, well-formed or hostile, in one stream, perhaps cut at the end."""
    parts: list[bytes] = []
    good: list[str] = []
    for i in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            parts.append(draw(_well_formed(i)))
            good.append(f"/wf/{i}")
        else:
            part, counts = draw(_hostile(i))
            parts.append(part)
            if counts:
                good.append(f"/wf/{i}")
    stream = b"".join(parts)
    return stream[: draw(st.integers(len(stream) // 2, len(stream)))], good


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=pipelined_stream())
def test_app_sees_no_more_requests_than_were_well_formed(
    srv: RunningServer, case: tuple[bytes, list[str]]
) -> None:
    stream, good = case
    seen(srv)
    talk(srv, stream)
    paths = [entry[1].removeprefix("http://x") for entry in seen(srv)]
    assert len(paths) <= len(good), (stream, paths)
    # Exactly a leading run of the well-formed ones, in order, and no smuggled request.
    assert paths == good[: len(paths)], (stream, paths)


def test_the_apps_headers_go_out_on_the_101(srv: RunningServer) -> None:
    """A chosen subprotocol and a cookie set with the 101 reach the client (as on
    Cloudflare); the handshake's own headers stay the runtime's."""
    raw = (
        f"GET /ws HTTP/1.1\r\nHost: x\r\n{UP}{GOOD_KEY}{V13}"
        "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n"
    ).encode() + close_frame(1000)
    data = talk(srv, raw)
    head = data.partition(b"\r\n\r\n")[0].decode()
    assert head.splitlines() == [
        "HTTP/1.1 101 Switching Protocols",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "Sec-WebSocket-Protocol: superchat",
        "Set-Cookie: session=1; HttpOnly",
    ], head
