"""Start Cloudflare's workerd on the reference app (reference/websocket-server.js).

workerd is the behaviour stateroom must match byte for byte; `make workerd` installs the
version pinned in reference/package-lock.json.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference"
WORKERD = REFERENCE_DIR / "node_modules" / ".bin" / "workerd"
CONFIG = REFERENCE_DIR / "config.capnp"

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class WorkerdMissingError(RuntimeError):
    """The pinned workerd binary is not installed."""


def _native_binary() -> Path:
    """The workerd executable itself.

    npm's install script hard-links the platform binary over the package's `bin/workerd`; were
    install scripts skipped, that file would be a Node shim spawning the binary as a child, which
    stopping the shim by PID would orphan, so the platform package's binary is used instead.
    """
    with WORKERD.open("rb") as exe:
        if exe.read(2) != b"#!":
            return WORKERD
    for candidate in sorted(REFERENCE_DIR.glob("node_modules/@cloudflare/workerd-*/bin/workerd")):
        if os.access(candidate, os.X_OK):
            return candidate
    return WORKERD


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(proc: subprocess.Popen[bytes], host: str, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"workerd exited with {proc.returncode} before listening:\n"
                + log.read_text(errors="replace")
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(
        f"workerd did not listen on {host}:{port} within {START_TIMEOUT_S}s:\n"
        + log.read_text(errors="replace")
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_workerd(config: Path = CONFIG) -> Iterator[tuple[str, int]]:
    """Serve ``config`` (reference/websocket-server.js by default) with workerd; yield
    (host, port); stop it after."""
    if not WORKERD.exists():
        raise WorkerdMissingError(
            f"workerd is not installed at {WORKERD}: run `make workerd` "
            "(npm ci in reference/) to install the pinned version"
        )
    port = _free_port(HOST)
    with tempfile.TemporaryDirectory(prefix="workerd-") as tmp:
        log = Path(tmp) / "workerd.log"
        with log.open("wb") as log_file:
            proc = subprocess.Popen(
                [
                    str(_native_binary()),
                    "serve",
                    str(config),
                    "--socket-addr",
                    f"http={HOST}:{port}",
                ],
                cwd=REFERENCE_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_listening(proc, HOST, port, log)
                yield HOST, port
            finally:
                _stop(proc)
