"""Running a real stateroom server for tests: a subprocess on an ephemeral port."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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
