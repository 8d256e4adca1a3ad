"""Streaming bodies over real sockets (tests/apps/streams), in the Worker (``/w``) and
through ``stub.fetch()`` in a Durable Object (``/o``): request bodies read chunk by chunk
with backpressure on the socket (bounded memory for any upload), responses streamed with
``Transfer-Encoding: chunked``, server-sent events flushed per event, and a client that
goes away closing the app's generator."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from support import RunningServer, fetch, serve

SIDES = ["w", "o"]
TIMEOUT_S = 20


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with serve("tests/apps/streams", "--in-memory") as server:
        yield server


def connect(srv: RunningServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(srv.host, srv.port, timeout=TIMEOUT_S)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read a response head; returns it and whatever body bytes came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_until(sock: socket.socket, data: bytes, marker: bytes) -> bytes:
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def dechunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert data == b"\r\n", data
            return body
        body += data[:size]
        assert data[size : size + 2] == b"\r\n"
        data = data[size + 2 :]


@pytest.mark.parametrize("side", SIDES)
def test_a_request_body_is_read_chunk_by_chunk(srv: RunningServer, side: str) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    conn = connect(srv)
    conn.request("POST", f"/{side}/upload", body=body)
    reply = conn.getresponse()
    seen = json.loads(reply.read())
    assert reply.status == 200
    assert seen["total"] == len(body)
    assert seen["chunks"] >= 1
    # Chunked on the way in, too (and the connection stays usable after).
    parts = [b"x" * 1000] * 50
    conn.request("POST", f"/{side}/upload", body=iter(parts), encode_chunked=True)
    assert json.loads(conn.getresponse().read())["total"] == 50_000
    conn.request("POST", f"/{side}/text", body=b"abc" * 10_000)
    assert conn.getresponse().read() == b"30000"
    conn.close()


@pytest.mark.parametrize("side", SIDES)
def test_an_upload_the_app_does_not_read_is_not_buffered(srv: RunningServer, side: str) -> None:
    """Backpressure: while the app holds the body unread, the server stops reading the
    socket once the stream holds its high-water mark; the rest waits in the client."""
    size = 32 * 1024 * 1024
    sent = [0]
    done = threading.Event()
    sock = socket.create_connection((srv.host, srv.port), timeout=TIMEOUT_S)

    def send() -> None:
        head = f"POST /{side}/slow-upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
        sock.sendall(head.encode() + b"\r\n")
        piece = b"\0" * 65536
        for _ in range(size // len(piece)):
            sock.sendall(piece)
            sent[0] += len(piece)
        done.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        status, body = fetch(srv, f"/{side}/held")
        assert status == 200, body
        held = json.loads(body)["held"]
        assert 64 * 1024 <= held <= 1024 * 1024, held  # high water + at most one read
        assert not done.is_set() and sent[0] < size  # the rest is still with the client
        assert fetch(srv, f"/{side}/release") == (200, "released")
        assert done.wait(TIMEOUT_S)
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
        rest = read_until(sock, rest, b"}")
        assert json.loads(rest) == {"total": size}
    finally:
        sock.close()
        sender.join(TIMEOUT_S)


@pytest.mark.parametrize("side", SIDES)
def test_a_streamed_response_is_sent_chunked(srv: RunningServer, side: str) -> None:
    body = b"0123456789" * 20_000
    with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(
            f"POST /{side}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head, rest = read_head(sock)
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        assert b"Transfer-Encoding: chunked" in lines
        assert not any(line.lower().startswith(b"content-length") for line in lines)
        data = read_until(sock, rest, b"\r\n0\r\n\r\n")
        assert dechunk(data) == body
        # Keep-alive: the next request on the same connection is answered.
        sock.sendall(
            f"POST /{side}/text HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok".encode()
        )
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ") and read_until(sock, rest, b"2") == b"2"


def test_http_1_0_gets_the_stream_unframed_then_a_close(srv: RunningServer) -> None:
    with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"POST /w/echo HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK") and b"chunked" not in head
    assert body == b"hello"


@pytest.mark.parametrize("side", SIDES)
def test_server_sent_events_flush_per_event_and_stop_when_the_client_leaves(
    srv: RunningServer, side: str
) -> None:
    sock = socket.create_connection((srv.host, srv.port), timeout=TIMEOUT_S)
    try:
        sock.sendall(f"GET /{side}/sse HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Type: text/event-stream" in head.split(b"\r\n")
        assert b"Transfer-Encoding: chunked" in head.split(b"\r\n")
        first = f"data: {side} 0\n\n".encode()
        data = read_until(sock, rest, first)  # here before the generator goes on
        assert fetch(srv, f"/{side}/tick") == (200, "ticked")
        second = f"data: {side} 1\n\n".encode()
        data = read_until(sock, data, second)
        assert dechunk(data + b"0\r\n\r\n") == first + second
    finally:
        sock.close()  # the client goes away: the generator is closed
    assert fetch(srv, f"/{side}/sse-closed") == (200, "closed")


def test_an_objects_stream_is_made_in_the_object(srv: RunningServer) -> None:
    status, body = fetch(srv, "/o/stored")
    assert status == 200, body
    assert [json.loads(line) for line in body.splitlines()] == [
        {"i": i, "stored": i} for i in range(3)
    ]
