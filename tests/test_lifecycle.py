"""Process lifecycle: SIGTERM closes WebSockets with 1001 and lets in-flight requests
finish; ``stateroom dev`` reloads changed code and closes open sockets with 1012."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import time
from pathlib import Path

from rawws import RawClient, close_frame, http, read_response
from support import ROOT, RunningServer, serve

APP = "tests/apps/hostile"
EXIT_BOUND_S = 5.0


def get(srv: RunningServer, target: str) -> bytes:
    return http(srv.host, srv.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def body(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


def echo(client: RawClient, text: str) -> None:
    client.send_text(text)
    assert client.recv_frame() == (0x81, f"[Durable Object]: {text}".encode())


def test_sigterm_closes_websockets_with_1001_and_exits_0() -> None:
    with serve(APP) as srv:
        clients = [RawClient(srv.host, srv.port) for _ in range(3)]
        for i, client in enumerate(clients):
            echo(client, f"before {i}")
        srv.proc.send_signal(signal.SIGTERM)
        try:
            for client in clients:
                assert client.recv_frame() == (0x88, struct.pack("!H", 1001) + b"Going Away")
                client.send(close_frame(1001))  # complete the close handshake
                assert client.at_eof()
        finally:
            for client in clients:
                client.close()
        assert srv.proc.wait(EXIT_BOUND_S) == 0, srv.output()
        assert "Traceback" not in srv.output(), srv.output()


def test_sigterm_lets_a_slow_request_finish() -> None:
    with serve(APP) as srv:
        sock = socket.create_connection((srv.host, srv.port), timeout=5)
        try:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            srv.wait_for_log("slow-start")  # the request is in flight (takes 0.5 s)
            started = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            srv.wait_for_log("shutting down")
            # Stop accepting: new connections are refused while the request finishes.
            deadline = time.monotonic() + 2
            while True:
                try:
                    socket.create_connection((srv.host, srv.port), timeout=1).close()
                except ConnectionRefusedError:
                    break
                assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
                time.sleep(0.01)
            response = read_response(sock)
        finally:
            sock.close()
        assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response
        assert body(response) == b"slow done"
        assert srv.proc.wait(EXIT_BOUND_S) == 0, srv.output()
        assert time.monotonic() - started < EXIT_BOUND_S
        assert "Traceback" not in srv.output(), srv.output()


def test_dev_reload_closes_sockets_with_1012_and_serves_new_code(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(ROOT / APP, app, ignore=shutil.ignore_patterns(".stateroom", "__pycache__"))
    with serve(app, command="dev") as srv:
        assert body(get(srv, "/version")) == b"v1"
        client = RawClient(srv.host, srv.port)
        try:
            echo(client, "before reload")
            worker = app / "worker.py"
            source = worker.read_text()
            assert 'VERSION = "v1"' in source
            worker.write_text(source.replace('VERSION = "v1"', 'VERSION = "v2"'))
            frame = client.recv_frame()  # waits (socket timeout 5 s) for the reload
            assert frame == (0x88, struct.pack("!H", 1012) + b"Service Restart"), frame
            client.send(close_frame(1012))
            assert client.at_eof()
        finally:
            client.close()
        srv.wait_for_log("reloaded")
        assert body(get(srv, "/version")) == b"v2"
        after = RawClient(srv.host, srv.port)
        try:
            echo(after, "after reload")
            after.send(close_frame(1000))
            assert after.recv_frame()[0] == 0x88
        finally:
            after.close()
        assert "Traceback" not in srv.output(), srv.output()


def test_sigterm_with_hostile_clients_still_exits() -> None:
    """Idle keep-alive, a half-sent head and a WebSocket that ignores the 1001 cannot keep
    the process alive: the first two are closed at once, the last after the close timeout."""
    with serve(APP) as srv:
        idle = socket.create_connection((srv.host, srv.port), timeout=5)
        idle.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert body(read_response(idle)) == b"v1"
        partial = socket.create_connection((srv.host, srv.port), timeout=5)
        partial.sendall(b"GET /version HTTP/1.1\r\nHo")
        deaf = RawClient(srv.host, srv.port)  # never answers the close frame
        echo(deaf, "hi")
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            for sock in (idle, partial):
                sock.settimeout(2)
                assert sock.recv(4096) == b"", "connection kept open during shutdown"
            exit_code = srv.proc.wait(10)
        finally:
            for sock in (idle, partial, deaf.sock):
                sock.close()
        assert exit_code == 0, srv.output()
        assert time.monotonic() - started < 10


def test_servers_run_the_build_under_test() -> None:
    """`make test` runs the suite twice; the servers the second run starts (with their own
    working directory) must run the pure-Python copy too, not the compiled install."""
    with serve("examples/websocket-server") as srv:
        pure = "runs as pure Python" in srv.output()
    assert pure == bool(os.environ.get("STATEROOM_PURE_PYTHON")), srv.output()
