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

The third table is the code a one-connection wake-up runs: distinct 64-byte lines of
instructions executed on most messages (from the same runs, with callgrind's
per-instruction counts). Every server's path is larger than a 32 KiB first-level
instruction cache, and the kernel's network stack runs between two messages, so
much of it is fetched again on each wake-up: a latency cost that grows with these
lines and that an instruction count does not show.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench.harness import free_port, wait_listening
from bench.micro import HANDSHAKE, drive_app, floor_receive, frame
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
# The same two stateroom servers with metrics and the dashboard on (--with-metrics).
_ADMIN = ["--metrics", "--dashboard", "--admin-token", "bench"]
WITH_METRICS = {
    "stateroom+metrics": [*SERVERS["stateroom"], *_ADMIN],
    "stateroom-hibernation+metrics": [*SERVERS["stateroom-hibernation"], *_ADMIN],
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


def _callgrind(out: Path, per_instruction: bool = False) -> list[str]:
    """The valgrind prefix of a counted run; its totals go to stderr."""
    detail = ["--dump-instr=yes", "--dump-line=no"] if per_instruction else []
    return ["valgrind", "--tool=callgrind", *detail, f"--callgrind-out-file={out}", sys.executable]


def _collected(stderr: bytes, what: str) -> int:
    found = _COLLECTED.search(stderr)
    if found is None:
        tail = stderr.decode(errors="replace")[-2000:]
        raise SystemExit(f"valgrind gave no count for {what}:\n{tail}")
    return int(found.group(1))


# Same hash seed in every run: the same dict layouts, so the same instructions.
_ENV = {**os.environ, "PYTHONHASHSEED": "0"}


def _count(path: str, messages: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [*_callgrind(Path(tmp) / "out"), "-m", "bench.instructions", "--child"]
        proc = subprocess.run(
            [*argv, f"{path}:{messages}"], capture_output=True, check=False, env=_ENV
        )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace")[-2000:]
        raise SystemExit(f"valgrind failed on {path}:\n{tail}")
    return _collected(proc.stderr, path)


def _handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(HANDSHAKE)
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


def _count_server(name: str, conns: int, messages: int, costs: dict[int, int] | None = None) -> int:
    """User-space instructions of one server process that served ``messages`` echoes.

    With ``costs``, also fills it with the instructions executed at each code address.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = [*_callgrind(out, costs is not None), *SERVERS[name], "--port", str(port)]
        log = Path(tmp) / "stderr"
        with log.open("wb") as log_file:  # a file, not a pipe: a full pipe would stall the server
            proc = subprocess.Popen(argv, cwd=ROOT, env=_ENV, stderr=log_file)
        try:
            wait_listening(port, 300, lambda: proc.poll() is None)
            socks = [_handshake(port) for _ in range(conns)]
            _echo_rounds(socks, messages // conns)
            for sock in socks:
                sock.close()
        finally:
            # SIGTERM, not SIGINT: under valgrind picows did not always act on SIGINT, and
            # both runs of a pair must end the same way. Valgrind writes its totals either way.
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=300)
        if costs is not None:
            costs.update(_instruction_costs(out))
        return _collected(log.read_bytes(), name)


def _instruction_costs(out: Path) -> dict[int, int]:
    """Self cost by instruction address, from a callgrind file written with --dump-instr."""
    costs: dict[int, int] = {}
    addr = 0
    call_line = False
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith("calls="):
            call_line = True  # the next line is the call's inclusive cost: not this code's
            continue
        if not line or line[0] not in "0123456789+-*":
            continue
        position, *cost = line.split()
        if position[0] == "+":
            addr += int(position[1:], 0)
        elif position[0] == "-":
            addr -= int(position[1:], 0)
        elif position != "*":
            addr = int(position, 16)
        if call_line:
            call_line = False
        elif cost:
            costs[addr] = costs.get(addr, 0) + int(cost[0])
    return costs


def _hot_lines(once: dict[int, int], twice: dict[int, int], messages: int) -> int:
    """Distinct 64-byte lines of code run on most messages: what a wake-up must fetch."""
    return len(
        {
            addr >> 6
            for addr, cost in twice.items()
            if addr in once and (cost - once[addr]) / messages >= 0.5
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000, help="N (the runs use N and 2N)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--server-messages", type=int, default=2_000, help="N for whole servers")
    parser.add_argument("--only", choices=("paths", "servers"), help="run one of the two tables")
    parser.add_argument(
        "--with-metrics",
        action="store_true",
        help="also count the stateroom servers with --metrics --dashboard on",
    )
    parser.add_argument(
        "--server",
        action="append",
        help="count only this whole server (repeatable; names as in the table)",
    )
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
        lines: dict[str, int] = {}
        if args.with_metrics:
            SERVERS.update(WITH_METRICS)
        for name in SERVERS:
            if args.server and name not in args.server:
                continue
            whole[name] = {}
            for conns, label in SHAPES:
                # One connection: one wake-up per message, so also note the code it touches.
                once: dict[int, int] | None = {} if conns == 1 else None
                twice: dict[int, int] | None = {} if conns == 1 else None
                count = (
                    _count_server(name, conns, 2 * m, twice) - _count_server(name, conns, m, once)
                ) / m
                whole[name][label] = round(count)
                print(f"  {name:24s} {label:14s} {whole[name][label]:7d}", flush=True)
                if once is not None and twice is not None:
                    lines[name] = _hot_lines(once, twice, m)
        results["server_code_lines_per_message"] = lines
        print("whole server, 1 conn x 1: 64-byte lines of code run on most messages:")
        for name, count in lines.items():
            print(f"  {name:24s} {count:7d} ({count * 64 / 1024:.1f} KiB)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
