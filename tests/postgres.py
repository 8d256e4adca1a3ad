"""A throw-away PostgreSQL server for tests, started by the suite itself.

``PostgresServer`` runs Debian's ``postgres`` (``make postgres`` installs the
``postgresql`` package where it is missing: ``tests/install-postgres.sh``) from a
fresh ``initdb`` in a temporary folder, on a free loopback port, with ``fsync=on``
(durability is what the tests check) and small memory settings. As root it runs as the
``postgres`` user (PostgreSQL refuses to run as root). The server is the leader of its
own process group: ``kill9()`` SIGKILLs that group (the postmaster it started and its
backends, nothing else) and ``restart()`` starts it again on the same port and data.

``postgres_server`` is a session-scoped pytest fixture sharing one server; tests that
kill the server start their own with ``PostgresServer()`` as a context manager.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

log = logging.getLogger("tests.postgres")

START_TIMEOUT_S = 30.0
USER = "stateroom"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps them off PATH)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    found = shutil.which("postgres")
    if found is not None:
        return Path(found).parent
    raise RuntimeError("PostgreSQL is not installed: `make postgres` installs Debian's package")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One server in a temporary folder; see the module docstring."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="stateroom-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",  # the cluster's files are synced by the server's own fsync=on
                "--no-instructions",
            ]
        )
        self.start()

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(argv, user=self._user, capture_output=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        logfile = open(self.root / "server.log", "ab")  # noqa: SIM115 (the child owns it)
        argv = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.root}",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=40",
            "-c",
            "max_wal_size=256MB",
            "-c",
            "log_min_messages=warning",
        ]
        with logfile:
            self.process = subprocess.Popen(
                argv,
                user=self._user,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,  # its own process group: kill9() reaches the backends
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        pidfile = self.data / "postmaster.pid"
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_tail()}")
            with contextlib.suppress(FileNotFoundError):
                lines = pidfile.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            time.sleep(0.02)
        raise RuntimeError(f"postgres not ready after {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-limit:]
        return ""

    def kill9(self) -> None:
        """SIGKILL the server and its backends (its process group), as a crash would."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        # Backends die with the group; wait until none holds the shared memory.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        self.process = None

    def restart(self) -> None:
        """Start again after ``kill9()`` or ``stop()`` (crash recovery runs first)."""
        if self.process is not None:
            self.stop()
        self.start()

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster), then SIGKILL if it hangs."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            log.warning("postgres did not stop in 15 s; killing it")
            self.kill9()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_databases = 0


def new_database(server: PostgresServer) -> str:
    """A fresh, empty database on ``server``; its URL."""
    import asyncio

    import asyncpg

    global _databases
    _databases += 1
    name = f"t{os.getpid()}_{_databases}"

    async def create() -> None:
        conn = await asyncpg.connect(server.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return server.dsn(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return new_database(postgres_server)
