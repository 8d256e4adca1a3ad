"""Fuzzing (issue 4): the WebSocket frame parser in-process, and the HTTP side over sockets.

Every ``@given`` is bounded by ``max_examples`` and runs in a few seconds, derandomized so a
CI run is reproducible (raise ``max_examples`` and drop ``derandomize`` to explore further).

(a) ``ServerConnection`` fed arbitrary bytes, split at arbitrary points, reports everything
through its handler (never raises), gives the same events and writes however the stream is
split, never buffers more than one frame (``max_message_size``, or 125 for a control
frame, plus a 14-byte header), and decodes valid frame
streams to exactly the messages they carry.

(b) A running server fed arbitrary request bytes answers with a well-formed status line or
closes, within a bound, and serves a normal request afterwards.
"""

from __future__ import annotations

import itertools
import random
import re
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stateroom.protocol.connection import ServerConnection
from stateroom.protocol.frames import apply_mask
from support import RunningServer, serve

# -- (a) the frame parser ----------------------------------------------------------------


@dataclass
class Recorder:
    events: list[tuple[object, ...]] = field(default_factory=list)

    def on_message(self, message: str | bytes) -> None:
        assert type(message) in (str, bytes), type(message)
        self.events.append(("message", message))

    def on_close_frame(self, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))

    def on_failure(self, code: int, reason: str) -> None:
        self.events.append(("failure", code, reason))


def buffered(conn: ServerConnection) -> int:
    """Bytes the parser holds: the incomplete frame plus the fragments of a message."""
    return len(conn._buf) + sum(len(p) for p in conn._frag_parts)


def feed(
    data: bytes, cuts: list[int], limit: int
) -> tuple[ServerConnection, Recorder, list[bytes]]:
    """Feed ``data`` in the pieces ``cuts`` make, checking the buffer bound after each."""
    out: list[bytes] = []
    rec = Recorder()
    conn = ServerConnection(out.append, rec, max_message_size=limit)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]
    for start, stop in itertools.pairwise(bounds):
        conn.receive_data(data[start:stop])
        # A control frame may carry 125 bytes whatever the message limit.
        assert buffered(conn) <= max(limit, 125) + 14, (buffered(conn), limit)
    return conn, rec, out


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse what the server wrote: unmasked frames only, nothing left over."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, data[pos:]
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80, "server frames must not be masked"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos : pos + 8])
            pos += 8
        assert len(data) - pos >= n, "truncated server frame"
        frames.append((b0, data[pos : pos + n]))
        pos += n
    return frames


def encode(
    b0: int,
    payload: bytes,
    key: bytes | None = b"\x01\x02\x03\x04",
    *,
    length: int | None = None,
    form: int | None = None,
) -> bytes:
    """A client frame; ``length``/``form`` can lie about the size or use a longer encoding."""
    n = len(payload) if length is None else length
    if form is None:
        form = 0 if n < 126 else 126 if n < 65536 else 127
    mbit = 0x80 if key is not None else 0
    if form == 0:
        head = bytes([b0, mbit | (n & 0x7F)])
    elif form == 126:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n & 0xFFFF)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n & (2**64 - 1))
    if key is None:
        return head + payload
    return head + key + apply_mask(payload, key)


@st.composite
def any_frame(draw: st.DrawFn) -> bytes:
    """A frame-shaped thing: mostly plausible, with every field sometimes wrong."""
    fin = draw(st.sampled_from([0x80, 0x80, 0x80, 0]))
    rsv = draw(st.sampled_from([0, 0, 0, 0, 0x40, 0x20, 0x10, 0x70]))
    opcode = draw(st.sampled_from([0, 1, 1, 2, 2, 8, 9, 10, 3, 7, 11, 15]))
    if draw(st.booleans()):
        payload = draw(st.text(max_size=40)).encode()
    else:
        payload = draw(st.binary(max_size=200))
    if opcode == 8 and draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1005, 1006, 1015, 999, 2999, 3000, 4999, 5000]))
        payload = struct.pack("!H", code) + payload[:20]
    key = draw(st.binary(min_size=4, max_size=4)) if draw(st.integers(0, 9)) else None
    length = draw(
        st.one_of(
            st.none(),
            st.none(),
            st.integers(0, 300),
            st.sampled_from([125, 126, 65535, 65536, 2**63 - 1, 2**63, 2**64 - 1]),
        )
    )
    form = draw(st.sampled_from([None, None, None, 126, 127]))
    return encode(fin | rsv | opcode, payload, key, length=length, form=form)


hostile_stream = st.lists(
    st.one_of(any_frame(), st.binary(min_size=1, max_size=30)), min_size=1, max_size=12
).map(b"".join)


def cuts_for(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, max(len(data), 1)), max_size=24)


@settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data(), stream=hostile_stream, limit=st.integers(0, 300))
def test_parser_survives_anything_and_ignores_splits(
    data: st.DataObject, stream: bytes, limit: int
) -> None:
    cuts = data.draw(cuts_for(stream))
    whole_conn, whole, whole_out = feed(stream, [], limit)
    conn, split, out = feed(stream, cuts, limit)
    # However TCP splits the bytes, the parser sees the same thing.
    assert split.events == whole.events
    assert b"".join(out) == b"".join(whole_out)
    assert conn.state == whole_conn.state

    events = split.events
    ends = [i for i, e in enumerate(events) if e[0] in ("close", "failure")]
    # At most one close or failure, and nothing is delivered after it.
    assert len(ends) <= 1 and (not ends or ends[0] == len(events) - 1), events
    written = server_frames(b"".join(out))
    # The server only ever writes pongs and at most one close frame, last.
    closes = [f for f in written if f[0] == 0x88]
    assert all(f[0] == 0x8A for f in written if f[0] != 0x88), written
    assert len(closes) <= 1 and (not closes or written[-1][0] == 0x88)
    if ends and events[-1][0] == "failure":
        _, code, reason = events[-1]
        assert code in (1002, 1007, 1009), events[-1]
        assert isinstance(reason, str) and len(reason.encode()) <= 123
        assert closes == [(0x88, struct.pack("!H", code) + reason.encode())]
        # After a failure, more input is ignored.
        before = len(events)
        conn.receive_data(stream)
        assert len(split.events) == before
    for event in events:
        if event[0] == "message":
            assert len(event[1]) <= limit  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    limit=st.integers(0, 1000),
    sizes=st.lists(st.integers(0, 600), min_size=1, max_size=5),
    cut=st.integers(2, 14),
)
def test_size_limit_enforced_from_the_header(limit: int, sizes: list[int], cut: int) -> None:
    """A (fragmented) message over the limit fails at the header, before its payload."""
    total = 0
    stream = b""
    for i, size in enumerate(sizes):
        b0 = (0x01 if i == 0 else 0x00) | (0x80 if i == len(sizes) - 1 else 0)
        frame = encode(b0, b"a" * size)
        header_len = len(frame) - size
        if size > limit - total:
            # Only the header of the offending frame (perhaps in two pieces) is sent.
            head = stream + frame[:header_len]
            conn, rec, out = feed(head, [len(stream) + min(cut, header_len)], limit)
            reason = f"Message is too large: {size} > {limit - total}"
            assert rec.events == [("failure", 1009, reason)]
            assert b"".join(out) == bytes([0x88, 2 + len(reason)]) + b"\x03\xf1" + reason.encode()
            assert buffered(conn) == 0
            return
        total += size
        stream += frame
    _, rec, _ = feed(stream, [cut], limit)
    assert rec.events == [("message", "a" * total)]


@st.composite
def payload_of(draw: st.DrawFn, text: bool) -> bytes:
    n = draw(
        st.one_of(
            st.integers(0, 300),
            st.sampled_from([125, 126, 127, 65535, 65536, 65537]),
        )
    )
    if text:
        alphabet = draw(st.sampled_from(["a", "é", "€", "😀", "aé€😀"]))
        return (alphabet * n)[:n].encode()
    return random.Random(draw(st.integers(0, 2**32))).randbytes(n)


@st.composite
def valid_stream(draw: st.DrawFn) -> tuple[bytes, list[tuple[object, ...]], list[bytes]]:
    """Masked messages, fragmented at random (inside UTF-8 sequences too), with pings and
    pongs between the fragments and perhaps a final close; plus what must come out."""
    key = st.binary(min_size=4, max_size=4)
    stream = b""
    expected: list[tuple[object, ...]] = []
    pongs: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        text = draw(st.booleans())
        payload = draw(payload_of(text))
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            opcode = (0x1 if text else 0x2) if i == 0 else 0x0
            fin = 0x80 if i == len(pieces) - 1 else 0
            stream += encode(fin | opcode, piece, draw(key))
            if draw(st.integers(0, 3)) == 0:
                ping = draw(st.binary(max_size=125))
                stream += encode(0x89, ping, draw(key))
                pongs.append(ping)
            if draw(st.integers(0, 5)) == 0:
                stream += encode(0x8A, draw(st.binary(max_size=125)), draw(key))
        expected.append(("message", payload.decode() if text else payload))
    if draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1011, 3000, 4999]))
        reason = draw(st.text(max_size=30).filter(lambda r: len(r.encode()) <= 123))
        stream += encode(0x88, struct.pack("!H", code) + reason.encode(), draw(key))
        expected.append(("close", code, reason))
        # Anything after the close frame is ignored.
        stream += encode(0x81, b"after close", draw(key))
    return stream, expected, pongs


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data(), case=valid_stream())
def test_valid_streams_decode_the_same_however_split(
    data: st.DataObject, case: tuple[bytes, list[tuple[object, ...]], list[bytes]]
) -> None:
    stream, expected, pongs = case
    cuts = data.draw(cuts_for(stream))
    for pieces in ([], cuts, list(range(len(stream))) if len(stream) < 400 else cuts):
        _, rec, out = feed(stream, pieces, 1 << 20)
        assert rec.events == expected
        assert server_frames(b"".join(out)) == [(0x8A, p) for p in pongs]


def test_parser_bound_with_byte_at_a_time_maximum_message() -> None:
    """The largest allowed message, fragmented, arriving one byte at a time for its headers."""
    limit = 1000
    stream = encode(0x01, b"x" * 600) + encode(0x80, b"y" * 400)
    _, rec, _ = feed(stream, list(range(0, len(stream), 7)), limit)
    assert rec.events == [("message", "x" * 600 + "y" * 400)]


# -- (b) the HTTP side ---------------------------------------------------------------------

ANSWER_BOUND_S = 5.0
STATUS_LINE = re.compile(rb"HTTP/1\.[01] [1-5]\d\d [^\r\n]*\r\n")


@pytest.fixture(scope="module")
def http_srv() -> Iterator[RunningServer]:
    with serve("tests/apps/hostile") as server:
        yield server


def _response_complete(data: bytes, head_request: bool) -> bool:
    """Has one whole final response (after any 1xx) arrived?"""
    while True:
        if b"\r\n\r\n" not in data:
            return False
        head, _, rest = data.partition(b"\r\n\r\n")
        status = head[9:12]
        if status.startswith(b"1") and status != b"101":
            data = rest
            continue
        if head_request or status in (b"101", b"204", b"304"):
            return True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                try:
                    return len(rest) >= int(value)
                except ValueError:
                    return False
        return False  # no length: the body ends with the connection


def exchange(srv: RunningServer, raw: bytes) -> tuple[bytes, bool]:
    """Send ``raw``, half-close, read until the server closes or one response is complete.

    Returns (bytes read, whether the server answered or closed within the bound).
    """
    sock = socket.create_connection((srv.host, srv.port), timeout=ANSWER_BOUND_S)
    data = b""
    try:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + ANSWER_BOUND_S
        head_request = raw.startswith(b"HEAD ")
        while not _response_complete(data, head_request):
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
        return data, True
    finally:
        sock.close()


def normal_request_works(srv: RunningServer) -> None:
    data, done = exchange(srv, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert done and data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nv1"), data


TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
METHODS = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PRI",
    "FOO", "get", "G\x00T", "", "GET GET", "\xff", "M" * 40,
]  # fmt: skip
VERSIONS = [
    "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.2", "HTTP/1",
    "HTTPS/1.1", "http/1.1", "HTTP/1.1 x", "", "HTTP/11.1", "HTTP/1.\x00",
]  # fmt: skip
KNOWN = [
    "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Expect",
    "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Origin", "Cookie",
]  # fmt: skip
VALUES = [
    "x", "", "0", "5", "-1", "99999999999999999999", "abc", "chunked", "gzip, chunked",
    "chunked, chunked", "close", "keep-alive", "Upgrade", "websocket", "100-continue",
    "dGhlIHNhbXBsZSBub25jZQ==", "13", "http://evil.example", "a\x00b", " spaced ",
]  # fmt: skip


def latin1(text: str) -> bytes:
    return text.encode("latin-1")


odd_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=30).map(
    lambda s: s.encode("utf-8")
)
good_name = st.one_of(
    st.sampled_from(KNOWN).map(str.encode),
    st.text(alphabet=TOKEN, min_size=1, max_size=20).map(str.encode),
)
good_value = st.one_of(
    st.sampled_from(VALUES[:-2]).map(str.encode),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
        str.encode
    ),
)
good_target = st.one_of(
    st.sampled_from([b"/", b"/version", b"/websocket", b"/getCurrentConnections", b"/url"]),
    st.just(b"http://a.example/url"),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(
        lambda s: ("/" + s).encode()
    ),
)
bad_target = st.one_of(
    st.sampled_from([b"*", b"//", b"/%00", b"/a b", b"", b"/\x00", b"/\xff"]), odd_text
)


@st.composite
def plausible_request(draw: st.DrawFn) -> bytes:
    """Well-formed syntax with arbitrary tokens, values and (mis)matching bodies."""
    method = draw(st.sampled_from(METHODS[:7]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    lines = [f"{method} ".encode() + draw(good_target) + f" {version}".encode()]
    if draw(st.integers(0, 5)):
        lines.append(b"Host: " + draw(st.sampled_from([b"x", b"a.example:8080", b"[::1]", b""])))
    for name, value in draw(st.lists(st.tuples(good_name, good_value), max_size=4)):
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + draw(st.binary(max_size=40))


@st.composite
def hostile_request(draw: st.DrawFn) -> bytes:
    """Every part of the request may be wrong."""
    eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r"]))
    method = draw(st.sampled_from(METHODS).map(latin1))
    version = draw(st.sampled_from(VERSIONS).map(latin1))
    lines = [method + b" " + draw(st.one_of(good_target, bad_target)) + b" " + version]
    if draw(st.integers(0, 4)):
        lines.append(b"Host: x")
    names = st.one_of(good_name, odd_text)
    values = st.one_of(good_value, st.sampled_from(VALUES).map(str.encode), odd_text)
    for name, value in draw(st.lists(st.tuples(names, values), max_size=6)):
        sep = draw(st.sampled_from([b": ", b":", b" : ", b"", b":\t", b"::"]))
        lines.append(name + sep + value)
    end = draw(st.sampled_from([eol + eol, eol, b""]))
    return eol.join(lines) + end + draw(st.binary(max_size=40))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request (plain, upgrade, chunked, pipelined) with random byte edits."""
    base = bytearray(
        draw(
            st.sampled_from(
                [
                    b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
                    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n",
                    b"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n",
                ]
            )
        )
    )
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(base)))
        kind = draw(st.integers(0, 2))
        if kind == 0 and pos < len(base):
            base[pos] = draw(st.integers(0, 255))
        elif kind == 1:
            base[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del base[pos : pos + draw(st.integers(1, 8))]
    return bytes(base)


any_request = st.one_of(
    plausible_request(), hostile_request(), mutated(), st.binary(min_size=1, max_size=200)
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=any_request)
def test_http_server_answers_or_closes_anything(http_srv: RunningServer, raw: bytes) -> None:
    assume(raw)
    data, done = exchange(http_srv, raw)
    assert done, f"no answer and no close within {ANSWER_BOUND_S}s for {raw!r}; got {data!r}"
    if data:
        assert STATUS_LINE.match(data), f"malformed answer to {raw!r}: {data[:200]!r}"
    normal_request_works(http_srv)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tail=st.one_of(st.binary(min_size=1, max_size=100), hostile_request(), mutated()))
def test_http_garbage_pipelined_after_a_request_never_displaces_its_answer(
    http_srv: RunningServer, tail: bytes
) -> None:
    """Responses go out in request order (RFC 9112 9.3.2): whatever follows a complete
    request, that request is answered first."""
    data, done = exchange(http_srv, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n" + tail)
    assert done, f"no answer and no close within {ANSWER_BOUND_S}s; got {data!r}"
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain;charset=UTF-8"
    assert data.startswith(first) and data.split(b"\r\n\r\n", 1)[1][:2] == b"v1", (tail, data)
    normal_request_works(http_srv)


def test_http_fuzz_left_no_traceback(http_srv: RunningServer) -> None:
    """Runs after the fuzzing above (same module-scoped server): no unhandled exception."""
    normal_request_works(http_srv)
    assert "Traceback" not in http_srv.output(), http_srv.output()[-4000:]
