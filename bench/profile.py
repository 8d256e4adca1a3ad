"""Profile a Python server with py-spy while the load generator drives it.

    .venv/bin/python -m bench.profile                          # stateroom, echo 100x8, 10 s
    .venv/bin/python -m bench.profile --format flamegraph --native
    .venv/bin/python -m bench.profile --server picows --scenario connect

The server runs pinned to the server core as in `bench.run`; py-spy and the load
generator share the other core. py-spy samples the whole process tree
(--subprocesses). The profile goes to bench/results/profiles/ (speedscope JSON opens
at speedscope's web viewer or in `speedscope` from npm; flamegraph is an SVG).
py-spy pauses the process for each sample unless --nonblocking: throughput under
the profiler is lower than in `bench.run`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import (
    RESULTS_DIR,
    BenchError,
    Cores,
    ServerSkipped,
    all_servers,
    build_loadgen,
    raise_nofile_limit,
    run_load,
)
from bench.run import SCENARIOS, WARM

EXTENSIONS = {"speedscope": ".speedscope.json", "flamegraph": ".svg", "raw": ".txt"}


def find_py_spy() -> str:
    here = Path(sys.executable).parent / "py-spy"
    if here.exists():
        return str(here)
    found = shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install py-spy (the bench extra has it)")
    return found


def main(argv: list[str] | None = None) -> int:
    python_servers = [s.name for s in all_servers() if s.python]
    echo_like = [s.name for s in SCENARIOS]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--server", default="stateroom", choices=python_servers)
    p.add_argument("--scenario", default="echo_c100_d8", choices=echo_like)
    p.add_argument("--duration", type=float, default=10.0, help="seconds sampled (max 120)")
    p.add_argument("--rate", type=int, default=250, help="samples per second")
    p.add_argument("--format", default="speedscope", choices=sorted(EXTENSIONS))
    p.add_argument("--native", action="store_true", help="also sample C frames (slower)")
    p.add_argument("--nonblocking", action="store_true", help="do not pause the server to sample")
    p.add_argument("--gil", action="store_true", help="only sample the thread holding the GIL")
    p.add_argument("--out", type=Path, help="profile file (default: bench/results/profiles/...)")
    args = p.parse_args(argv)
    if not 0 < args.duration <= 120:
        p.error("--duration must be in (0, 120]")

    py_spy = find_py_spy()
    raise_nofile_limit()
    cores = Cores.detect()
    build_loadgen()
    spec = next(s for s in all_servers() if s.name == args.server)
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or (
        RESULTS_DIR / "profiles" / f"{stamp}-{spec.name}-{scenario.name}{EXTENSIONS[args.format]}"
    )
    out.parent.mkdir(parents=True, exist_ok=True)

    try:
        with spec.launch(cores) as server:
            run_load(cores, server, WARM, 0, 0.3, setup_timeout=30)
            cmd = [
                *cores.prefix(cores.generator),
                py_spy,
                "record",
                "--pid",
                str(server.pid),
                "--rate",
                str(args.rate),
                "--duration",
                str(int(args.duration + 1)),
                "--format",
                args.format,
                "--output",
                str(out),
                "--subprocesses",
            ]
            cmd += ["--native"] * args.native + ["--nonblocking"] * args.nonblocking
            cmd += ["--gil"] * args.gil
            spy = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
            try:
                time.sleep(0.5)  # let py-spy attach
                run = run_load(cores, server, scenario, 0.5, args.duration)
            finally:
                try:
                    spy.wait(timeout=args.duration + 60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait(timeout=5)
    except (ServerSkipped, BenchError) as exc:
        print(f"{spec.name}: {exc}", file=sys.stderr)
        return 1
    r = run.result
    rate = (r["messages"] or r["cycles"]) / (r["window_s"] or 1)
    print(
        f"{spec.name} under py-spy, {scenario.title}: {rate:.0f}/s,"
        f" server CPU {run.server_cpu_s:.2f} s in {run.window_s:.2f} s"
    )
    if spy.returncode != 0 or not out.exists():
        print(f"py-spy failed (exit {spy.returncode})", file=sys.stderr)
        return 1
    print(f"profile: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
