"""Running a real stateroom server for tests: a subprocess on an ephemeral port."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
START_TIMEOUT_S = 20.0
_LISTENING = re.compile(r"listening on (\w+)://([\d.:\[\]a-z]+):(\d+)")


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    scheme: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://{self.host}:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the server's log matches ``pattern`` (an event, not a sleep)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise AssertionError(f"server log never matched {pattern!r}:\n{self.output()}")


def fetch(srv: RunningServer, path: str) -> tuple[int, str]:
    """GET ``path``: (status, body text), error statuses included."""
    try:
        with urllib.request.urlopen(srv.url + path, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextlib.contextmanager
def serve(app: str | Path, *args: str, command: str = "serve") -> Iterator[RunningServer]:
    """Run ``python -m stateroom <command> APP --port 0 ARGS`` until the block ends."""
    app_dir = Path(app)
    if not app_dir.is_absolute():
        app_dir = ROOT / app_dir
    with tempfile.TemporaryDirectory(prefix="stateroom-test-") as tmp:
        log = Path(tmp) / "server.log"
        if "--in-memory" not in args and "--persist-to" not in args:
            # Never the app folder's .stateroom/: each test gets its own storage.
            args = (*args, "--persist-to", str(Path(tmp) / "data"))
        with open(log, "wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stateroom", command, str(app_dir), "--port", "0", *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            match = None
            while match is None:
                match = _LISTENING.search(log.read_text(errors="replace"))
                if match is not None:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"stateroom did not start:\n{log.read_text()}")
                time.sleep(0.01)
            yield RunningServer(proc, match.group(2), int(match.group(3)), match.group(1), log)
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def keep_putting(
    srv: RunningServer,
    obj: str,
    prefix: str,
    acked: list[str],
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    """Write ``<prefix>i<n>`` keys to the storage test app's object ``obj``, one request
    at a time, until ``stop`` or the server goes away; ``acked`` gets every key whose
    write was acknowledged (a durability audit checks them afterwards)."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    for i in range(100_000):
        if stop.is_set():
            break
        key = f"{prefix}i{i}"
        try:
            conn.request("GET", f"/store/put?obj={obj}&k={key}&v={i}")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            break
        if response.status == 200 and body == b"ok":
            with lock:
                acked.append(key)
    conn.close()


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` until it holds (for state outside any log line to wait for)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def kill9_while_putting(
    srv: RunningServer,
    objects: list[str],
    prefix: str,
    acked: list[str],
    lock: threading.Lock,
    more: int,
) -> None:
    """Four writers on ``objects`` (``keep_putting``); once ``more`` further writes are
    acknowledged, SIGKILL the server under them (no chance to flush or close)."""
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=keep_putting,
            args=(srv, objects[w % len(objects)], f"{prefix}w{w}", acked, lock, stop),
        )
        for w in range(4)
    ]
    for t in threads:
        t.start()
    target = len(acked) + more
    wait_until(lambda: len(acked) >= target, timeout=30)
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait()
    stop.set()
    for t in threads:
        t.join(10)


def wal_database(path: Path) -> sqlite3.Connection:
    """A SQLite database set up as the commit log's objects are (exclusive WAL, no sync,
    no automatic checkpoint), with a tiny cache so open transactions spill pages into
    the WAL, and a table ``t (k INTEGER PRIMARY KEY, v BLOB)``."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("locking_mode=EXCLUSIVE", "journal_mode=WAL", "synchronous=OFF"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("PRAGMA cache_size=2")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    return conn
