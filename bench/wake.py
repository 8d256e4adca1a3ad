"""Time to wake a hibernated Durable Object: first reply after hibernation vs. awake.

Starts `stateroom serve examples/websocket-hibernation` with a short hibernation
timeout, opens one WebSocket, and repeatedly (bounded) waits until the server logs
that the object hibernated, then times one echo (which reconstructs the object) and
one more echo (object awake). Writes JSON under bench/results/ and prints a summary.

    python -m bench.wake [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

from bench.harness import REPO_DIR, RESULTS_DIR

HIBERNATE_S = 0.05
_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def _wait_log(log: Path, pattern: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, log.read_text(errors="replace"))) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"server log never reached {count} x {pattern!r}")
        time.sleep(0.002)


async def _measure(port: int, log: Path, rounds: int) -> dict[str, list[float]]:
    woke: list[float] = []
    awake: list[float] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/websocket") as ws:
        loop = asyncio.get_running_loop()
        for i in range(rounds):
            await loop.run_in_executor(None, _wait_log, log, r"Hibernating object", i + 1, 10.0)
            start = time.perf_counter()
            await ws.send("wake")
            await ws.recv()
            woke.append(time.perf_counter() - start)
            start = time.perf_counter()
            await ws.send("again")
            await ws.recv()
            awake.append(time.perf_counter() - start)
    return {"woken_s": woke, "awake_s": awake}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "stateroom", "serve",
                    "examples/websocket-hibernation", "--port", "0", "--in-memory",
                    "--hibernation-timeout", str(HIBERNATE_S), "--log-level", "debug",
                ],
                stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_DIR,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while not (match := _LISTENING.search(log.read_text(errors="replace"))):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text())
                time.sleep(0.01)
            samples = asyncio.run(_measure(int(match.group(1)), log, args.rounds))
        finally:
            proc.terminate()
            proc.wait(10)
    summary = {
        name: {
            "p50_us": round(statistics.median(values) * 1e6, 1),
            "max_us": round(max(values) * 1e6, 1),
        }
        for name, values in samples.items()
    }
    result = {"benchmark": "wake", "rounds": args.rounds, "summary": summary}
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"wake-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({**result, "samples": samples}, indent=2))
    print(json.dumps(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
