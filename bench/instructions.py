"""Instructions per message on the echo path, counted by valgrind: exact on a noisy machine.

    .venv/bin/python -m bench.instructions            # all three paths, ~2 minutes
    .venv/bin/python -m bench.instructions --json out.json

Timings on a shared VM swing by tens of percent from one minute to the next (see
"Run-to-run spread" in bench/README.md); an instruction count does not. Each path
of ``bench.micro`` (the two examples and the bare floor) runs under
``valgrind --tool=callgrind`` twice, with N and 2N messages, and the difference
divided by N is what one more message costs: start-up, imports and the
handshake cancel out. Instructions are not time (a cache miss costs more than an
add), but a change that takes instructions off the path takes time off it too, and
this is how to tell a 3% gain from the weather.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench.micro import drive_app, floor_receive, frame
from stateroom.compiled import HOT_MODULES, compiled_modules

PATHS = ("websocket-server", "websocket-hibernation", "floor")
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000, help="N (the runs use N and 2N)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
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
    for path in PATHS:
        per[path] = round((_count(path, 2 * n) - _count(path, n)) / n)
        print(f"  {path:24s} {per[path]:7d} instructions per message", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
