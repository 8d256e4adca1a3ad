"""stateroom behind nginx and HAProxy, configured as README.md recommends.

Each test runs through both proxies: WebSockets (echo, clean close, hibernation),
keep-alive on both sides of the proxy, and probes that try to get a request past the
proxy's ``/admin`` deny rule (request smuggling through a refused upgrade, Host
injection, dot segments). What reached the app is asked of the app itself
(tests/apps/recorder records every request), not guessed from status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websockets

from proxies import (
    KINDS,
    RunningProxy,
    binary,
    haproxy_config,
    nginx_config,
    run_proxy,
    upstream_connections,
)
from support import ROOT, RunningServer, fetch, serve

APPS: dict[str, tuple[str, ...]] = {
    "websocket": ("examples/websocket-server",),
    # Hibernates 0.2 s after its last event, and says so in its (debug) log.
    "hibernate": ("tests/apps/hibernate", "--hibernation-timeout", "0.2", "--log-level", "debug"),
    "recorder": ("tests/apps/recorder",),
}


# nginx's own WebSocket example maps no Upgrade to "Connection: close": with it the
# upstream keep-alive does nothing for plain requests, but an upgrade request still goes
# on a kept connection (issue #18 was found with it). Not what the README advises.
MAP_CLOSE = "''      close;"


def _map_close(config: str) -> str:
    assert "''      '';" in config
    return config.replace("''      '';", MAP_CLOSE)


VARIANTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "nginx-map-close": ("nginx", _map_close),
}


class Stacks:
    """Servers and proxies for the module, each started on first use and kept until the
    module's tests are done: one stateroom server per (proxy, app), so that what one
    proxy's tests did never shows in what the other's app saw."""

    def __init__(self, exits: contextlib.ExitStack) -> None:
        self._exits = exits
        self._proxies: dict[tuple[str, str], RunningProxy] = {}

    def get(self, kind: str, app: str) -> RunningProxy:
        key = (kind, app)
        if key not in self._proxies:
            app_dir, *args = APPS[app]
            server = self._exits.enter_context(serve(app_dir, *args))
            binary_kind, edit = VARIANTS.get(kind, (kind, lambda config: config))
            proxy = run_proxy(binary_kind, server, edit)
            self._proxies[key] = self._exits.enter_context(proxy)
        return self._proxies[key]


@pytest.fixture(scope="module")
def stacks() -> Iterator[Stacks]:
    with contextlib.ExitStack() as exits:
        yield Stacks(exits)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# -- a raw HTTP/1.1 client: exact bytes out, every byte that comes back kept -------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes = field(repr=False)


class RawHttp:
    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.received = b""  # everything the proxy sent on this connection
        self.eof = False

    def __enter__(self) -> RawHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.received += data
        return True

    def _until(self, marker: bytes) -> bytes | None:
        while marker not in self.buf:
            if not self._fill():
                return None
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n and self._fill():
            pass
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self) -> Reply | None:
        """The next response (interim 1xx skipped), or None if the connection ended first."""
        while True:
            start = len(self.received) - len(self.buf)
            head = self._until(b"\r\n\r\n")
            if head is None:
                return None
            status_line, *lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if status >= 200:
                break
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while (size_line := self._until(b"\r\n")) is not None:
                size = int(size_line.split(b";")[0], 16)
                body += self._take(size)
                self._until(b"\r\n")
                if size == 0:
                    break
        elif status in (204, 304):
            body = b""
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        end = len(self.received) - len(self.buf)
        return Reply(status, headers, body, self.received[start:end])

    def drain(self, wait: float = 0.3) -> bytes:
        """Whatever else arrives within ``wait`` seconds (or until the proxy closes)."""
        self.sock.settimeout(wait)
        with contextlib.suppress(TimeoutError):
            while self._fill():
                pass
        rest, self.buf = self.buf, b""
        return rest


def get(port: int, path: str, *, host: str = "h", extra: str = "") -> Reply | None:
    """One request on a new connection."""
    with RawHttp(port) as client:
        client.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
        return client.response()


def seen_by_app(server: RunningServer) -> list[dict[str, str]]:
    """Every request the recorder app was given (asked of the server directly, not through
    the proxy): ``method``, ``url``, ``path`` (as sent, query included) and ``body``."""
    status, body = fetch(server, "/__seen")
    assert status == 200, body
    seen = []
    for method, url, text in json.loads(body):
        rest = url.split("://", 1)[1]
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        seen.append({"method": method, "url": url, "path": path, "body": text})
    return seen


def resolved(path: str) -> str:
    """``path`` (its query dropped) with its dot segments, percent-encoded ones too,
    resolved as a URL parser (JavaScript's ``new URL()``) resolves them."""
    segments = re.sub("%2e", ".", path.partition("?")[0], flags=re.IGNORECASE).split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    return "/" + "/".join(out)


def admin_requests(server: RunningServer, tag: str) -> list[dict[str, str]]:
    """The requests for /admin... the app was given (after dot segments, which an app may
    resolve itself), of those whose URL holds ``tag``."""
    return [
        r
        for r in seen_by_app(server)
        if resolved(r["path"]).lower().startswith("/admin") and tag in r["url"]
    ]


# The recorder's answer to a request for /admin...: what no client may ever be given.
ADMIN_ANSWER = re.compile(rb"seen [A-Z]+ [a-z]+://[^/\s]*/admin", re.IGNORECASE)


def answered(method: str, path: str) -> bytes:
    """The recorder's answer to a body-less request for ``path`` with ``Host: h``."""
    return f"seen {method} http://h{path} 0".encode()


def wait_for_count(server: RunningServer, text: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while server.output().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} never seen {count} times"
        time.sleep(0.01)


# -- WebSockets ---------------------------------------------------------------------------


def test_websocket_echo_and_clean_close(stacks: Stacks, kind: str) -> None:
    proxy = stacks.get(kind, "websocket")

    def connections() -> str:
        reply = get(proxy.port, "/getCurrentConnections", extra="Connection: close\r\n")
        assert reply is not None and reply.status == 200
        return reply.body.decode()

    async def run() -> None:
        ws = await websockets.connect(f"{proxy.ws_url}/websocket")
        await ws.send("hello")
        assert await ws.recv() == "[Durable Object]: hello"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"[Durable Object]: \x00\xff"
        big = "x" * 200_000  # several proxy buffers' worth, both ways
        await ws.send(big)
        assert await ws.recv() == f"[Durable Object]: {big}"
        assert connections().startswith("There is 1 WebSocket client")
        await ws.close()
        # The app's close frame came back through the proxy: a clean 1000 close.
        assert ws.close_code == 1000
        assert ws.close_reason == "Durable Object is closing WebSocket"

    asyncio.run(run())
    assert connections().startswith("There are 0 WebSocket clients")


HIBERNATED = "Hibernating object"  # the server's debug log line


def test_websocket_hibernation(stacks: Stacks, kind: str) -> None:
    """Messages are still answered after the object hibernated, through the proxy."""
    proxy = stacks.get(kind, "hibernate")
    server = proxy.upstream

    async def run() -> None:
        loop = asyncio.get_running_loop()

        async def hibernated_since(count: int) -> int:
            """Wait until the object hibernated again after ``count`` hibernations."""
            await loop.run_in_executor(None, wait_for_count, server, HIBERNATED, count + 1)
            return server.output().count(HIBERNATED)

        hibernations = server.output().count(HIBERNATED)
        ws = await websockets.connect(f"{proxy.ws_url}/ws?name={kind}&tags=t")
        await ws.send("constructed")
        constructed = int(await ws.recv())
        hibernations = await hibernated_since(hibernations)
        # The object is out of memory; the socket, through the proxy, is not.
        await ws.send("whoami")
        assert json.loads(await ws.recv()) == {"name": kind, "tags": ["t"]}
        await ws.send("constructed")
        assert int(await ws.recv()) > constructed  # woken by a message: constructed again
        await hibernated_since(hibernations)
        await ws.send("echo after the second sleep")
        assert await ws.recv() == "echo after the second sleep"
        await ws.close()
        assert ws.close_code == 1000

    asyncio.run(run())


# -- keep-alive ---------------------------------------------------------------------------


def test_keep_alive_between_client_and_proxy(stacks: Stacks, kind: str) -> None:
    """Several requests, one after the other, on one client connection."""
    proxy = stacks.get(kind, "recorder")
    tag = uuid.uuid4().hex[:8]
    with RawHttp(proxy.port) as client:
        for i in range(5):
            client.send(f"GET /public/ka-{tag}-{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            reply = client.response()
            assert reply is not None, f"the proxy closed the connection after {i} requests"
            assert (reply.status, reply.body) == (200, answered("GET", f"/public/ka-{tag}-{i}"))
            assert reply.headers.get("connection", "").lower() != "close"
    paths = [r["path"] for r in seen_by_app(proxy.upstream) if tag in r["path"]]
    assert paths == [f"/public/ka-{tag}-{i}" for i in range(5)]
    if kind == "nginx":
        # nginx's own account: one client connection ($connection), its requests 1 to 5.
        pattern = re.compile(rf"^(\d+) (\d+) \"GET /public/ka-{tag}-\d ", re.MULTILINE)
        deadline = time.monotonic() + 5
        while len(lines := pattern.findall(proxy.access_log())) < 5:
            assert time.monotonic() < deadline, proxy.access_log()
            time.sleep(0.01)
        assert len({conn for conn, _ in lines}) == 1
        assert [int(n) for _, n in lines] == [1, 2, 3, 4, 5]


def test_proxy_reuses_upstream_connections(stacks: Stacks, kind: str) -> None:
    """Many clients, few connections to stateroom: the kernel's own count of the TCP
    connections made to the server's port while the clients came and went."""
    proxy = stacks.get(kind, "recorder")
    tag = uuid.uuid4().hex[:8]
    requests = 10
    before = upstream_connections(proxy.upstream.port)
    for i in range(requests):
        reply = get(proxy.port, f"/public/reuse-{tag}-{i}", extra="Connection: close\r\n")
        assert reply is not None and reply.body == answered("GET", f"/public/reuse-{tag}-{i}")
    opened = upstream_connections(proxy.upstream.port) - before
    # nginx's single worker keeps one idle connection and takes it again. HAProxy keeps
    # idle server connections per thread (one per CPU: two here), and its threads hand a
    # connection back a moment after the answer has left, so allow it some slack.
    most = 1 if kind == "nginx" else requests // 2
    assert len(opened) <= most, f"{len(opened)} upstream connections for {requests} requests"
    assert len([r for r in seen_by_app(proxy.upstream) if tag in r["path"]]) == requests


def test_nginx_map_to_close_defeats_upstream_keep_alive(stacks: Stacks) -> None:
    """Why the README's map gives plain requests an empty Connection, not "close": with
    "close", each request costs a new connection to stateroom, keepalive 16 or not."""
    proxy = stacks.get("nginx-map-close", "recorder")
    assert MAP_CLOSE in (proxy.workdir / "nginx.conf").read_text()
    tag = uuid.uuid4().hex[:8]
    requests = 5
    before = upstream_connections(proxy.upstream.port)
    for i in range(requests):
        reply = get(proxy.port, f"/public/close-{tag}-{i}", extra="Connection: close\r\n")
        assert reply is not None and reply.body == answered("GET", f"/public/close-{tag}-{i}")
    assert len(upstream_connections(proxy.upstream.port) - before) == requests


# -- smuggling and rule-bypass probes -----------------------------------------------------


def _assert_app_never_saw_admin(proxy: RunningProxy, tag: str) -> None:
    admin = admin_requests(proxy.upstream, tag)
    assert not admin, f"requests reached /admin past {proxy.kind}'s deny rule: {admin}"


@pytest.mark.parametrize("kind", [*KINDS, *VARIANTS])
def test_refused_upgrade_body_is_not_a_request(stacks: Stacks, kind: str) -> None:
    """Issue #18: a request with Connection: Upgrade, an Upgrade and a body, answered
    without a 101, must not have its body run as the next request on the connection
    (also behind nginx's map to "close", the configuration the issue was found with)."""
    proxy = stacks.get(kind, "recorder")
    tag = uuid.uuid4().hex[:8]
    smuggled = f"GET /admin/smuggled-{tag} HTTP/1.1\r\nHost: h\r\n\r\n".encode()
    probe = (
        f"POST /public/probe-{tag} HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
        f"Upgrade: foo\r\nContent-Length: {len(smuggled)}\r\n\r\n"
    ).encode() + smuggled
    received: list[bytes] = []  # every byte every client got
    answers: list[tuple[bytes, Reply | None]] = []  # (expected body, reply) of follow-ups
    with RawHttp(proxy.port) as client:
        client.send(probe)
        client.response()
        if not client.eof:
            # The same client's next request: its own answer, not the smuggled one.
            follow = f"/public/after-{tag}"
            client.send(f"GET {follow} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            answers.append((answered("GET", follow), client.response()))
        client.drain()
        received.append(client.received)
    # Other clients next: the proxy hands them the upstream connections it keeps.
    for i in range(4):
        with RawHttp(proxy.port) as other:
            path = f"/public/victim-{tag}-{i}"
            other.send(f"GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
            answers.append((answered("GET", path), other.response()))
            other.drain()
            received.append(other.received)

    _assert_app_never_saw_admin(proxy, tag)
    for data in received:
        assert not ADMIN_ANSWER.search(data), data
    for expected, reply in answers:
        assert reply is not None and reply.body == expected, (expected, reply)
    for request in seen_by_app(proxy.upstream):
        if request["path"] == f"/public/probe-{tag}":
            # Where the probe itself reached the app, the smuggled bytes were its body
            # (or, refused as a body, were dropped with the connection): never a request.
            assert request["body"] in (smuggled.decode(), ""), request


HOST_PROBES = {
    # The Host header's value becomes the URL's host: a "/" in it would move the path.
    "slash": "Host: h/admin?\r\n",
    "duplicate": "Host: h\r\nHost: h/admin?\r\n",
    "userinfo": "Host: h/admin#@h\r\n",
}


@pytest.mark.parametrize("probe", HOST_PROBES)
def test_host_header_cannot_move_the_path(stacks: Stacks, kind: str, probe: str) -> None:
    proxy = stacks.get(kind, "recorder")
    tag = uuid.uuid4().hex[:8]
    with RawHttp(proxy.port) as client:
        head = f"GET /public/host-{tag} HTTP/1.1\r\n{HOST_PROBES[probe]}Connection: close\r\n"
        client.send(head.encode() + b"\r\n")
        reply = client.response()
        client.drain()
    _assert_app_never_saw_admin(proxy, tag)
    assert not ADMIN_ANSWER.search(client.received), client.received
    if reply is not None and reply.status == 200:
        assert reply.body == answered("GET", f"/public/host-{tag}")


DOT_PROBES = [
    "/public/../admin/dots-",
    "/public/%2e%2e/admin/dots-",
    "/public/%2E%2E/admin/dots-",
    "/public/.%2e/admin/dots-",
    "/public/%2e./admin/dots-",
    "/public/./../admin/dots-",
    "/public/..%2fadmin/dots-",
]
# Absolute-form targets: the authority is the request's own, the path still meets the rule.
ABSOLUTE_PROBES = [
    "http://h/admin/absolute-",
    "http://h/public/../admin/absolute-",
    "http://h/public/%2e%2e/admin/absolute-",
]


@pytest.mark.parametrize("path", DOT_PROBES + ABSOLUTE_PROBES)
def test_request_target_cannot_reach_a_denied_path(stacks: Stacks, kind: str, path: str) -> None:
    proxy = stacks.get(kind, "recorder")
    tag = uuid.uuid4().hex[:8]
    path += tag
    with RawHttp(proxy.port) as client:
        client.send(f"GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        reply = client.response()
        client.drain()
    _assert_app_never_saw_admin(proxy, tag)
    assert not ADMIN_ANSWER.search(client.received), client.received
    assert reply is not None


# -- the README's configurations ------------------------------------------------------------

README_CONFIGS = {
    "nginx": lambda: nginx_config("80", 8787),
    "haproxy": lambda: haproxy_config("*:80", 8787),
}


def test_readme_gives_the_tested_configurations(kind: str, tmp_path: Path) -> None:
    """README.md shows the configurations these tests run (less the test-only parts),
    and each proxy accepts it as it stands."""
    config = README_CONFIGS[kind]()
    assert f"```{kind}\n{config}```" in (ROOT / "README.md").read_text()
    conf = tmp_path / f"{kind}.conf"
    conf.write_text(config)
    if kind == "nginx":
        # -t only reads and checks; the pid file would be written by a real start.
        cmd = [binary("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf)]
        cmd += ["-e", str(tmp_path / "error.log"), "-g", f"pid {tmp_path}/nginx.pid;"]
    else:
        cmd = [binary("haproxy"), "-c", "-f", str(conf)]
    check = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "warn" not in (check.stdout + check.stderr).lower(), check.stdout + check.stderr
