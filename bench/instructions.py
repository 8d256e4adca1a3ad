"""Instructions per message on the echo path, counted by valgrind: exact on a noisy machine.

    .venv/bin/python -m bench.instructions            # in-process paths and whole servers, ~6 min
    .venv/bin/python -m bench.instructions --json out.json

Timings on a shared VM swing by tens of percent from one minute to the next (see
"Run-to-run spread" in bench/README.md); an instruction count does not. Each path
of ``bench.micro`` (the two examples and the bare floor) runs under
``valgrind --tool=callgrind`` twice, with N and 2N messages, and the difference
divided by N is what one more message costs: start-up, imports and the
handshake cancel out. Instructions are not time (a cache miss costs more than an
add), but a change that takes instructions off the path takes time off it too, and
this is how to tell a 3% gain from the weather.

The second table counts whole server processes over real sockets: stateroom on both
examples and the picows echo peer, each started under callgrind, sent N and then 2N
messages by a client outside valgrind (one connection, one message in flight: one
event-loop wake-up per message, as in the latency test; and 100 connections with one
message each in flight, as in the 100x1 test). The count is user space only; the
kernel's share is the same for every server (one read and one write syscall per
message, see bench/README.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench.micro import drive_app, floor_receive, frame
from stateroom.compiled import HOT_MODULES, compiled_modules

PATHS = ("websocket-server", "websocket-hibernation", "floor")
ROOT = Path(__file__).resolve().parent.parent
SERVERS = {
    "stateroom": ["-m", "stateroom", "serve", "examples/websocket-server", "--in-memory"],
    "stateroom-hibernation": [
        "-m",
        "stateroom",
        "serve",
        "examples/websocket-hibernation",
        "--in-memory",
    ],
    "picows": ["bench/servers/picows_echo.py"],
}
SHAPES = ((1, "1 conn x 1"), (100, "100 conns x 1"))
_COLLECTED = re.compile(rb"Collected : (\d+)")


def _run_exact(path: str, messages: int) -> None:
    """The child: push exactly ``messages`` frames through one path, nothing else."""

    def drive(receive: Callable[[bytes], None], data: bytes) -> float:
        for _ in range(messages):
            receive(data)
        return 0.0

    if path == "floor":
        drive(floor_receive(), frame())
    else:
        uvloop.run(drive_app(path, drive))


def _count(path: str, messages: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/out",
                sys.executable,
                "-m",
                "bench.instructions",
                "--child",
                f"{path}:{messages}",
            ],
            capture_output=True,
            check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # same dict layouts in every run
        )
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(
            f"valgrind failed on {path}:\n{proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return int(found.group(1))


def _handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the server closed the connection during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    return sock


def _echo_rounds(socks: list[socket.socket], rounds: int) -> None:
    """Each round: one 32-byte text message on every socket, then every echo read."""
    data = frame()
    for _ in range(rounds):
        for sock in socks:
            sock.sendall(data)
        for sock in socks:
            got = sock.recv(4096)
            # 50-byte echo: 2-byte header + "[Durable Object]: " + 32 bytes.
            while len(got) < 52:
                more = sock.recv(4096)
                if not more:
                    raise RuntimeError("the server closed a connection mid-test")
                got += more


def _count_server(name: str, conns: int, messages: int) -> int:
    """User-space instructions of one server process that served ``messages`` echoes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            *SERVERS[name],
            "--port",
            str(port),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        log = Path(tmp) / "stderr"
        with log.open("wb") as log_file:  # a file, not a pipe: a full pipe would stall the server
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=log_file)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    socks = [_handshake(port) for _ in range(conns)]
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            _echo_rounds(socks, messages // conns)
            for sock in socks:
                sock.close()
        finally:
            proc.send_signal(signal.SIGINT)  # a clean exit, so callgrind writes its totals
            proc.wait(timeout=300)
        err = log.read_bytes()
    found = _COLLECTED.search(err)
    if found is None:
        tail = err.decode(errors="replace")[-2000:]
        raise SystemExit(f"valgrind gave no count for {name}:\n{tail}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000, help="N (the runs use N and 2N)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--server-messages", type=int, default=2_000, help="N for whole servers")
    parser.add_argument("--only", choices=("paths", "servers"), help="run one of the two tables")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, messages = args.child.split(":")
        _run_exact(path, int(messages))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind, then run this again")
    compiled = compiled_modules()
    build = "compiled (mypyc)" if len(compiled) == len(HOT_MODULES) else "pure Python"
    n = args.messages
    results: dict[str, object] = {"build": build, "messages": n, "instructions_per_message": {}}
    per: dict[str, int] = results["instructions_per_message"]  # type: ignore[assignment]
    print(f"hot path: {build}")
    if args.only != "servers":
        print("in-process path (bench.micro's), instructions per message:")
        for path in PATHS:
            per[path] = round((_count(path, 2 * n) - _count(path, n)) / n)
            print(f"  {path:24s} {per[path]:7d}", flush=True)
    if args.only != "paths":
        m = args.server_messages
        whole: dict[str, dict[str, int]] = {}
        results["server_instructions_per_message"] = whole
        results["server_messages"] = m
        print("whole server process over real sockets, user-space instructions per message:")
        for name in SERVERS:
            whole[name] = {}
            for conns, label in SHAPES:
                count = (_count_server(name, conns, 2 * m) - _count_server(name, conns, m)) / m
                whole[name][label] = round(count)
                print(f"  {name:24s} {label:14s} {whole[name][label]:7d}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
