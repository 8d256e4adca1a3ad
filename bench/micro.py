"""Per-message CPU cost of stateroom's echo path, without the kernel.

    .venv/bin/python -m bench.micro                 # both examples and the floor, 300k messages
    .venv/bin/python -m bench.micro --messages 1000000

Serves an example in this process (uvloop, in-memory storage), opens one real
WebSocket to it, then swaps the connection's transport for one whose ``write`` does
nothing and calls ``data_received`` with a 32-byte masked text frame in a loop: the
whole path from frame bytes to the echo's frame bytes (parse, unmask, UTF-8, the
object's listener or ``webSocketMessage``, framing), minus the syscalls. The figure
is the best of many 10,000-message chunks, so that a noisy machine shows the code's
cost rather than its neighbours'. "floor" is the least any Python echo does per
message: unmask, decode, prefix, encode, frame, with no runtime around it.

It says whether the hot path ran compiled (mypyc) or as pure Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from stateroom.api.websockets import LocalEvents
from stateroom.compiled import HOT_MODULES, compiled_modules
from stateroom.config import load_config
from stateroom.protocol.frames import apply_mask
from stateroom.runtime.options import RuntimeOptions
from stateroom.server.server import Server
from stateroom.server.websocket import WebSocketConnection
from stateroom.storage.sqlite import SqliteBackend
from stateroom.worker import WorkerRuntime

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 10_000
HANDSHAKE = (
    b"GET /websocket HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class _NullTransport:
    """Counts writes and drops them: all the echo path asks of a transport.

    No ``__getattr__`` fallback to the real one: it would tax every ``write`` with a
    hook the real (C) transport does not have.
    """

    def __init__(self, real: asyncio.Transport) -> None:
        self.real = real
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def writelines(self, data: list[bytes]) -> None:
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


def frame() -> bytes:
    payload = os.urandom(16).hex().encode()  # 32 bytes of text, as in bench.run
    mask = os.urandom(4)
    return bytes((0x81, 0x80 | len(payload))) + mask + apply_mask(payload, mask)


def _best_ns(receive: Callable[[bytes], None], frame: bytes, messages: int) -> float:
    for _ in range(CHUNK):  # warm up
        receive(frame)
    best = float("inf")
    for _ in range(max(1, messages // CHUNK)):
        start = time.perf_counter()
        for _ in range(CHUNK):
            receive(frame)
        best = min(best, time.perf_counter() - start)
    return best / CHUNK * 1e9


async def _measure_app(app: str, messages: int) -> tuple[float, int]:
    return await drive_app(app, lambda receive, frame: _best_ns(receive, frame, messages))


async def drive_app(
    app: str, drive: Callable[[Callable[[bytes], None], bytes], float]
) -> tuple[float, int]:
    """Serve ``app``, open a socket, and hand ``drive`` its ``data_received`` and a frame."""
    config = load_config(ROOT / "examples" / app)
    runtime = WorkerRuntime(config, RuntimeOptions(), SqliteBackend(in_memory=True))
    runtime.start()
    server = Server(LocalEvents(runtime), port=0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(HANDSHAKE)
    await reader.readuntil(b"\r\n\r\n")
    for _ in range(1000):
        conns = [c for c in server.connections if isinstance(c, WebSocketConnection)]
        if conns:
            break
        await asyncio.sleep(0.001)
    conn = conns[0]
    null = _NullTransport(conn.transport)
    conn.transport = null  # type: ignore[assignment]
    ns = drive(conn.data_received, frame())
    conn.transport = null.real
    writer.close()
    await server.shutdown()
    return ns, null.writes


def _floor(messages: int) -> float:
    return _best_ns(floor_receive(), frame(), messages)


def floor_receive() -> Callable[[bytes], None]:
    """The least any Python echo does with one frame."""
    writes: list[bytes] = []
    write = writes.append

    def receive(data: bytes) -> None:
        n = len(data)
        if 6 <= n < 132 and data[0] == 0x81 and data[1] - 0x80 == n - 6:
            text = apply_mask(data[6:], data[2:6]).decode()
            out = ("[Durable Object]: " + text).encode()
            write(bytes((0x81, len(out))) + out)
            writes.clear()

    return receive


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=300_000, help="messages per measurement")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    compiled = compiled_modules()
    build = "compiled (mypyc)" if len(compiled) == len(HOT_MODULES) else "pure Python"
    results: dict[str, Any] = {"build": build, "messages": args.messages, "ns_per_message": {}}
    for app in ("websocket-server", "websocket-hibernation"):
        ns, writes = uvloop.run(_measure_app(app, args.messages))
        if writes == 0:
            raise SystemExit(f"{app}: no echo was written; the measurement is void")
        results["ns_per_message"][app] = round(ns)
    results["ns_per_message"]["floor"] = round(_floor(args.messages))
    print(f"hot path: {build}")
    for name, ns in results["ns_per_message"].items():
        print(f"  {name:24s} {ns:6d} ns per message")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
