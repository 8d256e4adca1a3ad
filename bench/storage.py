"""Storage benchmark (issue 20): acknowledged writes, new objects, memory, and the stall.

    .venv/bin/python -m bench.storage                 # every figure, a few minutes
    .venv/bin/python -m bench.storage --duration 2    # shorter windows

What it measures, the server (``stateroom serve bench/apps/writes`` on disk, not in memory)
pinned to one core and ``bench/loadgen`` to the other:

- **Acknowledged writes per second** to 1, 10, 100 and 1,000 objects, 32 connections with
  one write in flight each (a write is acknowledged when its echo arrives: the object's RPC
  result, and so the echo, leaves only once the write is durable). Beside it, on the same
  core and disk, in this process: raw ``sqlite3`` (a file per object, WAL,
  ``synchronous=FULL``, one commit per write, objects in turn) and one shared SQLite
  database committing one write of every object together (group commit, the limit a
  commit log approaches).
- **New objects per second**, each with its first write (32 connections), then the server's
  memory and file descriptors per live object and the disk per one-key object.
- **The stall**: an unrelated object's WebSocket echo (one connection, one message in
  flight), p50 and p99, alone and while 16 connections write to 8 objects.

Each stateroom figure is taken for every store in ``--stores`` (default: ``local``, the
commit log, ``files``, an fsync per object's commit: the behaviour before the log, and
``postgresql``, the log in a throw-away PostgreSQL the run starts), side by side in one run.

JSON in ``bench/results/storage-<time>.json``; a table on stdout for ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import (
    REPO_DIR,
    RESULTS_DIR,
    Cores,
    RunningServer,
    Scenario,
    _subprocess_server,
    build_loadgen,
    fd_counts,
    machine_info,
    raise_nofile_limit,
    rss_bytes,
    run_load,
)
from bench.run import echo_metrics

APP = "bench/apps/writes"
OBJECT_COUNTS = (1, 10, 100, 1000)
CONNS = 32


STORES = ("local", "files", "postgresql")  # the log; an fsync per object's commit; PostgreSQL
IDLE_WAIT_S = 12.0  # past the pool's 10 s idle close: memory of live *idle* objects


@contextmanager
def writes_server(cores: Cores, data: Path, store: str = "local") -> Iterator[RunningServer]:
    argv = [sys.executable, "-m", "stateroom", "serve", APP, "--persist-to", str(data)]
    argv += ["--storage", store]
    # Objects stay in memory for the whole run: memory per live object is measured.
    argv += ["--idle-timeout", "3600", "--log-level", "warning", "--port", "{port}"]
    with _subprocess_server("stateroom-writes", argv, cores, REPO_DIR) as server:
        yield server


def load(
    cores: Cores, server: RunningServer, path: str, conns: int, warmup: float, duration: float
) -> dict[str, Any]:
    scenario = Scenario(path, path, "echo", conns=conns, inflight=1, size=32)
    run = run_load(cores, dataclasses.replace(server, path=path), scenario, warmup, duration)
    if run.result["errors"]:
        raise RuntimeError(f"{path}: {run.result['first_error']}")
    return echo_metrics(run)


def http_get(server: RunningServer, path: str) -> str:
    # A prefill creates up to 1,000 objects, each a new file: give it time.
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=300) as r:
        body: bytes = r.read()
    return body.decode()


# -- stateroom --------------------------------------------------------------------------


def acked_writes(cores: Cores, warmup: float, duration: float, store: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp,
        writes_server(cores, Path(tmp) / "data", store) as server,
    ):
        for n in OBJECT_COUNTS:
            http_get(server, f"/prefill?objects={n}")  # steady state: every object exists
            out[str(n)] = load(cores, server, f"/writes?objects={n}", CONNS, warmup, duration)
    return out


def new_objects(cores: Cores, warmup: float, duration: float, store: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-new-") as tmp:
        data = Path(tmp) / "data"
        with writes_server(cores, data, store) as server:
            load(cores, server, "/echo", 1, 0.2, 0.3)  # the runtime warm, nothing stored yet
            pids = server.pids()
            rss0, fds0 = rss_bytes(pids), sum(fd_counts(pids).values())
            metrics = load(cores, server, "/new", CONNS, warmup, duration)
            created = int(http_get(server, "/count"))
            rss1, fds1 = rss_bytes(pids), sum(fd_counts(pids).values())
            disk = _du(data)
            time.sleep(IDLE_WAIT_S)  # every object still live (idle timeout 3600 s), all idle
            rss2, fds2 = rss_bytes(pids), sum(fd_counts(pids).values())
    return {
        "new_objects_per_s": metrics["msgs_per_s"],
        "objects": created,
        "kib_per_live_object": (rss1 - rss0) / created / 1024,
        "fds_per_live_object": (fds1 - fds0) / created,
        "kib_per_idle_object": (rss2 - rss0) / created / 1024,
        "fds_per_idle_object": (fds2 - fds0) / created,
        "disk_kib_per_object": disk / created / 1024,
        "server_cpu_util": metrics["server_cpu_util"],
    }


def stall(cores: Cores, warmup: float, duration: float, store: str) -> dict[str, Any]:
    """An unrelated object's echo latency, alone and under 16 writers to 8 objects."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-stall-") as tmp,
        writes_server(cores, Path(tmp) / "data", store) as server,
    ):
        http_get(server, "/prefill?objects=8")
        alone = load(cores, server, "/echo", 1, warmup, duration)
        box: dict[str, Any] = {}

        def writers() -> None:
            box["writes"] = load(cores, server, "/writes?objects=8", 16, 0.0, duration + 2)

        thread = threading.Thread(target=writers)
        thread.start()
        time.sleep(1.0)  # the writers are up (their window is 2 s longer than the probe's)
        loaded = load(cores, server, "/echo", 1, 0.0, duration)
        thread.join()
    keys = ("p50_us", "p99_us", "msgs_per_s")
    return {
        "alone": {k: alone[k] for k in keys},
        "while_writing": {k: loaded[k] for k in keys},
        "writes_per_s": box["writes"]["msgs_per_s"],
        "server_cpu_util": box["writes"]["server_cpu_util"],
    }


@contextmanager
def _store_url(store: str) -> Iterator[str]:
    """What ``--storage`` gets for ``store``: ``postgresql`` starts the test suite's
    throw-away PostgreSQL (``tests/postgres.py``, fsync on) for the run."""
    if store != "postgresql":
        yield store
        return
    sys.path.insert(0, str(REPO_DIR / "tests"))
    from postgres import PostgresServer, new_database

    with PostgresServer() as server:
        yield new_database(server)


# -- peers, in this process ----------------------------------------------------------------


def sqlite_per_object(objects: int, seconds: float) -> float:
    """A file per object, WAL, synchronous=FULL, one commit per write, objects in turn."""
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-", dir=REPO_DIR / "bench") as tmp:
        conns = []
        for i in range(objects):
            conn = sqlite3.connect(Path(tmp) / f"{i}.sqlite", isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)")
            conns.append(conn)
        writes = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            conn = conns[writes % objects]
            conn.execute("BEGIN")
            conn.execute("INSERT OR REPLACE INTO kv VALUES ('k', ?)", (b"x" * 32,))
            conn.execute("COMMIT")
            writes += 1
        for conn in conns:
            conn.close()
        return writes / seconds


def sqlite_group_commit(objects: int, seconds: float) -> float:
    """One shared database; each commit holds one write of every object."""
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-", dir=REPO_DIR / "bench") as tmp:
        conn = sqlite3.connect(Path(tmp) / "shared.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE kv (object INTEGER, key TEXT, value BLOB, PRIMARY KEY (object, key))"
        )
        rows = [(i, "k", b"x" * 32) for i in range(objects)]
        writes = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            conn.execute("BEGIN")
            conn.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
            writes += objects
        conn.close()
        return writes / seconds


def _du(path: Path) -> int:
    """Bytes allocated on disk under ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += (Path(root) / name).stat().st_blocks * 512
    return total


# -- report ------------------------------------------------------------------------------


def table(data: dict[str, Any]) -> str:
    stores = list(data["stores"])
    head = " | ".join(f"stateroom {st}: acked writes/s (per server CPU-s)" for st in stores)
    lines = [
        f"| objects | {head} | raw sqlite3, file per object | shared SQLite, group commit |",
        "|---|" + "---|" * (len(stores) + 2),
    ]
    for n in OBJECT_COUNTS:
        cells = []
        for st in stores:
            s = data["stores"][st]["acked_writes"][str(n)]
            cells.append(f"{s['msgs_per_s']:,.0f} ({s['msgs_per_server_cpu_s']:,.0f})")
        lines.append(
            f"| {n} | {' | '.join(cells)} | {data['sqlite_per_object'][str(n)]:,.0f} | "
            f"{data['sqlite_group_commit'][str(n)]:,.0f} |"
        )
    lines += [
        "",
        "| store | new objects/s (first write) | KiB per live object (just written; idle"
        f" {IDLE_WAIT_S:.0f} s) | fds per live object (just written; idle) |"
        " disk KiB per one-key object | objects |",
        "|---|---|---|---|---|---|",
    ]
    for st in stores:
        new = data["stores"][st]["new_objects"]
        lines.append(
            f"| {st} | {new['new_objects_per_s']:,.0f} | {new['kib_per_live_object']:.0f};"
            f" {new['kib_per_idle_object']:.0f} | {new['fds_per_live_object']:.2f};"
            f" {new['fds_per_idle_object']:.2f} | {new['disk_kib_per_object']:.1f} |"
            f" {new['objects']:,} |"
        )
    lines += [
        "",
        "| store | unrelated object's echo | p50 µs | p99 µs |",
        "|---|---|---|---|",
    ]
    for st in stores:
        stall_ = data["stores"][st]["stall"]
        lines += [
            f"| {st} | alone | {stall_['alone']['p50_us']:.0f} | {stall_['alone']['p99_us']:.0f} |",
            f"| {st} | while 16 connections write to 8 objects"
            f" ({stall_['writes_per_s']:,.0f} acked writes/s, server core"
            f" {stall_['server_cpu_util']:.0%} busy) | {stall_['while_writing']['p50_us']:.0f} |"
            f" {stall_['while_writing']['p99_us']:.0f} |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per figure")
    p.add_argument(
        "--out", type=Path, help="JSON file (default: bench/results/storage-<time>.json)"
    )
    p.add_argument(
        "--stores",
        type=lambda text: text.split(","),
        default=list(STORES),
        help=f"stateroom --storage values to measure, side by side (default: {','.join(STORES)})",
    )
    args = p.parse_args(argv)
    build_loadgen()
    raise_nofile_limit()
    cores = Cores.detect()
    stamp = datetime.datetime.now(datetime.UTC)
    data: dict[str, Any] = {
        "started": stamp.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True
        ).stdout.strip(),
        "duration_s": args.duration,
    }
    for store in args.stores:
        with _store_url(store) as url:
            data.setdefault("stores", {})[store] = {
                "acked_writes": acked_writes(cores, args.warmup, args.duration, url),
                "new_objects": new_objects(cores, args.warmup, args.duration, url),
                "stall": stall(cores, args.warmup, args.duration, url),
            }
    if cores.server is not None:
        os.sched_setaffinity(0, {cores.server})  # the in-process peers on the server's core
    data["sqlite_per_object"] = {str(n): sqlite_per_object(n, args.duration) for n in OBJECT_COUNTS}
    data["sqlite_group_commit"] = {
        str(n): sqlite_group_commit(n, args.duration) for n in OBJECT_COUNTS
    }
    out = args.out or RESULTS_DIR / f"storage-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data))
    print(f"\nwrote {out.relative_to(REPO_DIR) if out.is_relative_to(REPO_DIR) else out}")


if __name__ == "__main__":
    main()
