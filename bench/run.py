"""Run the benchmark: every server side by side, alternating, several rounds.

    .venv/bin/python -m bench.run                 # full run (~15 min), JSON in bench/results/
    .venv/bin/python -m bench.run --smoke         # 1-second runs to prove the harness works
    .venv/bin/python -m bench.run --servers picows,stateroom --scenarios echo_c100_d8

Each round starts every server afresh, in turn, and runs every scenario on it; a
server that fails to start is skipped with a note. Results (each round plus median,
min and max) go to one timestamped JSON file; `python -m bench.report` turns the
latest into the tables in bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    RESULTS_DIR,
    BenchError,
    Cores,
    HoldRun,
    LoadRun,
    RunningServer,
    Scenario,
    ServerSkipped,
    ServerSpec,
    affinity,
    all_servers,
    build_loadgen,
    idle_capacity,
    machine_info,
    raise_nofile_limit,
    rss_bytes,
    run_alternating,
    run_hold,
    run_load,
)

SCENARIOS: list[Scenario] = [
    Scenario("echo_c100_d1", "echo, 100 connections x 1 in flight, 32 B", "echo", 100, 1, 32),
    Scenario("echo_c100_d8", "echo, 100 connections x 8 in flight, 32 B", "echo", 100, 8, 32),
    Scenario("latency_c1", "round trip, 1 connection x 1 in flight, 32 B", "echo", 1, 1, 32),
    Scenario("large_64k", "echo, 10 connections x 1 in flight, 64 KiB", "echo", 10, 1, 65536),
    Scenario(
        "connect",
        "new connections: handshake, one echo, close; 32 at a time",
        "connect",
        open_concurrency=32,
    ),
]
IDLE = "idle_conns"
ALTERNATING = "latency_alternating"
ALTERNATING_TITLE = (
    "round trip, 32 B: every server up at once, one connection to each, one message in"
    " flight in all, {block} echoes on one server, then the next"
)
WARM = Scenario("warm", "warm-up", "echo", 10, 1, 32)


def latency_us(lat: dict[str, float], keys: tuple[str, ...]) -> dict[str, float]:
    """The load generator's latency figures (ns) named in ``keys``, as ``<key>_us``."""
    return {f"{key}_us": lat[key] / 1e3 for key in keys}


def echo_metrics(run: LoadRun) -> dict[str, Any]:
    r = run.result
    window = r["window_s"] or 1e-9
    lat = r["latency_ns"]
    m: dict[str, Any] = {
        "msgs_per_s": r["messages"] / window,
        "mib_per_s": r["bytes"] / window / 2**20,
        "server_cpu_s": run.server_cpu_s,
        "server_cpu_util": run.server_cpu_s / run.window_s if run.window_s > 0 else None,
        "client_cpu_util": r["client_cpu_s"] / window,
        "msgs_per_server_cpu_s": r["messages"] / run.server_cpu_s if run.server_cpu_s else None,
        **latency_us(lat, ("p50", "p90", "p99", "max")),
        "messages": r["messages"],
        "window_s": window,
    }
    return m


def connect_metrics(run: LoadRun) -> dict[str, Any]:
    r = run.result
    window = r["window_s"] or 1e-9
    lat = r["latency_ns"]
    return {
        "conns_per_s": r["cycles"] / window,
        "server_cpu_s": run.server_cpu_s,
        "server_cpu_util": run.server_cpu_s / run.window_s if run.window_s > 0 else None,
        "client_cpu_util": r["client_cpu_s"] / window,
        "conns_per_server_cpu_s": r["cycles"] / run.server_cpu_s if run.server_cpu_s else None,
        "cycle_p50_ms": lat["p50"] / 1e6,
        "cycle_p99_ms": lat["p99"] / 1e6,
        "close_timeouts": r["close_timeouts"],
        "errors": r["errors"],
        "cycles": r["cycles"],
        "window_s": window,
    }


def idle_metrics(run: HoldRun) -> dict[str, Any]:
    if run.opened == 0 or run.rss_open == 0:
        raise BenchError(
            f"no idle connection held ({run.failed} failed: {run.result.get('first_error')})"
            + ("; the server is gone" if run.rss_open == 0 else "")
        )
    opened = run.opened
    m: dict[str, Any] = {
        "opened": run.opened,
        "failed": run.failed,
        "rss_before_mib": run.rss_before / 2**20,
        "rss_open_mib": run.rss_open / 2**20,
        "bytes_per_conn": (run.rss_open - run.rss_before) / opened,
        "open_seconds": run.result.get("open_seconds"),
    }
    if run.rss_later is not None:
        m["rss_hibernated_mib"] = run.rss_later / 2**20
        m["bytes_per_hibernated_conn"] = (run.rss_later - run.rss_before) / opened
    return m


def run_server_round(
    spec: ServerSpec, cores: Cores, args: argparse.Namespace, scenarios: list[Scenario]
) -> dict[str, Any]:
    """Start the server, run each scenario on it, stop it. Errors are recorded, not raised."""
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    try:
        with spec.launch(cores) as server:
            out["_start_s"] = time.monotonic() - t0
            out["_rss_started_mib"] = rss_bytes(server.pids()) / 2**20
            out["_processes"] = len(server.pids())
            out["_affinity"] = affinity(server.pids())
            _run_scenarios(spec, server, cores, args, scenarios, out)
    except ServerSkipped as exc:
        out["_skipped"] = str(exc)
    except BenchError as exc:
        out["_error"] = str(exc)
    out["_seconds"] = time.monotonic() - t0
    return out


def _run_scenarios(
    spec: ServerSpec,
    server: RunningServer,
    cores: Cores,
    args: argparse.Namespace,
    scenarios: list[Scenario],
    out: dict[str, Any],
) -> None:
    try:  # one short echo run: loads lazy imports, proves the server echoes
        run_load(cores, server, WARM, 0, args.warm, setup_timeout=30)
    except BenchError as exc:
        out["_error"] = f"warm-up echo failed, scenarios skipped: {exc}"
        return
    if IDLE in args.scenario_names:
        try:
            capacity, fds_per_conn = idle_capacity(cores, server, args.open_concurrency)
            target = min(args.idle_conns, capacity)
            time.sleep(args.settle)
            hold = run_hold(
                cores,
                server,
                target,
                args.open_concurrency,
                args.settle,
                args.hibernation_wait if spec.hibernation else None,
            )
            out[IDLE] = idle_metrics(hold) | {"target": target, "fds_per_conn": fds_per_conn}
        except BenchError as exc:
            out[IDLE] = {"error": str(exc)}
        time.sleep(args.settle)  # let the server drop the released connections
    for scenario in scenarios:
        if not server.alive():
            out["_error"] = f"the server exited; {scenario.name} and later scenarios not run"
            return
        try:
            run = run_load(cores, server, scenario, args.warmup, args.duration)
        except BenchError as exc:
            out[scenario.name] = {"error": str(exc)}
            continue
        if scenario.mode == "connect":
            out[scenario.name] = connect_metrics(run)
        else:
            out[scenario.name] = echo_metrics(run)


def alternating_round(
    specs: list[ServerSpec], cores: Cores, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Start every server at once and time round trips to each in turn (see run_alternating).

    Returns figures (or an error) by server name; a server that does not start is left out.
    """
    out: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        running = []
        for spec in specs:
            try:
                server = stack.enter_context(spec.launch(cores))
                run_load(cores, server, WARM, 0, args.warm, setup_timeout=30)
            except BenchError as exc:
                out[spec.name] = {"error": f"not in the alternating run: {exc}"}
                continue
            running.append(server)
        if not running:
            return out
        try:
            figures = run_alternating(
                cores, running, args.alternate_block, args.warmup, args.duration * len(running)
            )
        except BenchError as exc:
            return out | {s.name: {"error": str(exc)} for s in running}
    for name, lat in figures.items():
        keys = ("p50", "p90", "p99", "p999", "max", "mean")
        out[name] = {**latency_us(lat, keys), "messages": lat["count"]}
    return out


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of every numeric metric over the rounds that produced it."""
    summary: dict[str, Any] = {}
    names = {k for r in rounds for k in r if not k.startswith("_")}
    for name in sorted(names):
        per_metric: dict[str, list[float]] = {}
        errors = []
        for r in rounds:
            entry = r.get(name)
            if not isinstance(entry, dict):
                continue
            if "error" in entry:
                errors.append(entry["error"])
                continue
            for metric, value in entry.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    per_metric.setdefault(metric, []).append(float(value))
        summary[name] = {
            metric: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
            for metric, v in per_metric.items()
        }
        if errors:
            summary[name]["_errors"] = errors
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    servers = [s.name for s in all_servers()]
    scenario_names = [s.name for s in SCENARIOS] + [ALTERNATING, IDLE]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    p.add_argument("--duration", type=float, default=3.0, help="seconds measured per scenario")
    p.add_argument("--warm", type=float, default=0.3, help="seconds of the start-up echo check")
    p.add_argument("--idle-conns", type=int, default=10_000)
    p.add_argument("--open-concurrency", type=int, default=64, help="handshakes at a time")
    p.add_argument("--settle", type=float, default=1.0, help="seconds before reading RSS")
    p.add_argument(
        "--hibernation-wait",
        type=float,
        default=12.0,
        help="seconds idle before reading RSS again (hibernation example)",
    )
    p.add_argument(
        "--servers", default=",".join(servers), help="comma-separated: " + ", ".join(servers)
    )
    p.add_argument(
        "--scenarios",
        default=",".join(scenario_names),
        help="comma-separated: " + ", ".join(scenario_names),
    )
    p.add_argument(
        "--alternate-block",
        type=int,
        default=1000,
        help=f"{ALTERNATING}: echoes on one server before the next",
    )
    p.add_argument("--max-minutes", type=float, default=20.0, help="start no round after this")
    p.add_argument("--smoke", action="store_true", help="tiny runs that only prove the harness")
    p.add_argument(
        "--out", type=Path, help="JSON file to write (default: bench/results/<time>.json)"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds = 1
        args.warmup = 0.3
        args.duration = 1.0
        args.warm = 0.2
        args.idle_conns = min(args.idle_conns, 1000)
        args.hibernation_wait = 1.0
        args.settle = 0.3
    args.server_names = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenario_names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.server_names) - set(servers)
    unknown |= set(args.scenario_names) - set(scenario_names)
    if unknown:
        p.error(f"unknown: {', '.join(sorted(unknown))}")
    return args


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def progress_line(name: str, out: dict[str, Any]) -> str:
    if "_skipped" in out:
        return f"  {name}: skipped ({out['_skipped'][:200]})"
    parts = []
    for key, value in out.items():
        if key.startswith("_") or not isinstance(value, dict):
            continue
        if "error" in value:
            parts.append(f"{key}=ERROR({value['error'][:120]})")
        elif "msgs_per_s" in value:
            parts.append(
                f"{key}={fmt_rate(value['msgs_per_s'])}/s"
                f" ({fmt_rate(value['msgs_per_server_cpu_s'])}/cpu-s,"
                f" p50 {value['p50_us']:.0f}us p99 {value['p99_us']:.0f}us)"
            )
        elif "conns_per_s" in value:
            parts.append(
                f"{key}={fmt_rate(value['conns_per_s'])}/s"
                f" ({fmt_rate(value['conns_per_server_cpu_s'])}/cpu-s)"
            )
        elif "bytes_per_conn" in value:
            hib = value.get("bytes_per_hibernated_conn")
            extra = f", hibernated {hib / 1024:.1f} KiB" if hib is not None else ""
            parts.append(
                f"{key}={value['bytes_per_conn'] / 1024:.1f} KiB/conn"
                f" ({value['opened']} open, {value['failed']} failed{extra})"
            )
    if "_error" in out:
        parts.append(f"ERROR({out['_error'][:200]})")
    return f"  {name} ({out['_seconds']:.0f}s): " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nofile = raise_nofile_limit()
    if nofile < args.idle_conns + 100:
        args.idle_conns = max(nofile - 100, 100)
    cores = Cores.detect()
    build_loadgen()
    specs = [s for s in all_servers() if s.name in args.server_names]
    scenarios = [s for s in SCENARIOS if s.name in args.scenario_names]
    started = dt.datetime.now(dt.UTC)
    if args.out is None:
        folder = RESULTS_DIR / "smoke" if args.smoke else RESULTS_DIR
        args.out = folder / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)

    data: dict[str, Any] = {
        "smoke": args.smoke,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "idle_conns": args.idle_conns,
            "open_concurrency": args.open_concurrency,
            "settle_s": args.settle,
            "hibernation_wait_s": args.hibernation_wait,
            "nofile_limit": nofile,
            "server_core": cores.server,
            "generator_core": cores.generator,
            "alternate_block": args.alternate_block,
        },
        "scenarios": {s.name: s.title for s in SCENARIOS}
        | {ALTERNATING: ALTERNATING_TITLE.format(block=args.alternate_block)}
        | {IDLE: f"{args.idle_conns} idle connections (one echo each), server RSS"},
        "servers": {
            s.name: {"label": s.label, "group": s.group, "rounds": [], "notes": []} for s in specs
        },
    }

    def save() -> None:
        for entry in data["servers"].values():
            entry["summary"] = summarize(entry["rounds"])
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        tmp.replace(args.out)

    print(f"cores: server {cores.server}, generator {cores.generator}; writing {args.out}")
    load1 = data["machine"]["loadavg_at_start"][0]
    if load1 > 0.5 and not args.smoke:
        print(f"warning: load average {load1:.2f}: the machine is not quiet, figures will be noisy")
    deadline = time.monotonic() + args.max_minutes * 60
    skip: dict[str, str] = {}
    for round_no in range(1, args.rounds + 1):
        if time.monotonic() > deadline:
            data["notes"] = f"stopped before round {round_no}: --max-minutes reached"
            print(data["notes"])
            break
        print(f"round {round_no}/{args.rounds}")
        for spec in specs:
            entry = data["servers"][spec.name]
            if spec.name in skip:
                entry["rounds"].append({"_skipped": skip[spec.name]})
                continue
            out = run_server_round(spec, cores, args, scenarios)
            entry["rounds"].append(out)
            if "_skipped" in out:
                skip[spec.name] = out["_skipped"]
                entry["notes"].append(f"skipped: {out['_skipped']}")
            print(progress_line(spec.name, out), flush=True)
            save()
        if ALTERNATING in args.scenario_names:
            live = [s for s in specs if s.name not in skip]
            print(f"  {ALTERNATING}: {', '.join(s.name for s in live)}", flush=True)
            for name, figures in alternating_round(live, cores, args).items():
                data["servers"][name]["rounds"][-1][ALTERNATING] = figures
                shown = (
                    f"p50 {figures['p50_us']:.0f}us p99 {figures['p99_us']:.0f}us"
                    if "error" not in figures
                    else f"ERROR({figures['error'][:200]})"
                )
                print(f"    {name}: {shown}", flush=True)
            save()
    data["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    save()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
