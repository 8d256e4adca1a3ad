"""Turn a bench results file into the markdown tables of bench/README.md.

    .venv/bin/python -m bench.report                       # latest bench/results/*.json
    .venv/bin/python -m bench.report bench/results/X.json  # a given run
    .venv/bin/python -m bench.report --print               # to stdout, README untouched

The README's text outside the markers is kept; only the part between
`<!-- bench-results:start -->` and `<!-- bench-results:end -->` is replaced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import BENCH_DIR, RESULTS_DIR

README = BENCH_DIR / "README.md"
START = "<!-- bench-results:start -->"
END = "<!-- bench-results:end -->"
CLIENT_BOUND = 0.9  # generator CPU use above which a figure may be the generator's limit


def _k(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}"


def _num(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{digits}f}"


def _kib(v: float) -> str:
    return f"{v / 1024:.1f}"


# (column title, scenario, metric, formatter, higher is better)
COLUMNS: list[tuple[str, str, str, Callable[[float], str], bool]] = [
    ("echo msg/s, 100x1", "echo_c100_d1", "msgs_per_s", _k, True),
    ("per server CPU-s, 100x1", "echo_c100_d1", "msgs_per_server_cpu_s", _k, True),
    ("echo msg/s, 100x8", "echo_c100_d8", "msgs_per_s", _k, True),
    ("per server CPU-s, 100x8", "echo_c100_d8", "msgs_per_server_cpu_s", _k, True),
    ("RTT p50 (us)", "latency_c1", "p50_us", _num(0), False),
    ("RTT p99 (us)", "latency_c1", "p99_us", _num(0), False),
    ("64 KiB echo MiB/s", "large_64k", "mib_per_s", _num(0), True),
    ("64 KiB per server CPU-s", "large_64k", "msgs_per_server_cpu_s", _k, True),
    ("new conns/s", "connect", "conns_per_s", _k, True),
    ("conns per server CPU-s", "connect", "conns_per_server_cpu_s", _k, True),
    ("KiB per idle conn", "idle_conns", "bytes_per_conn", _kib, False),
    ("KiB per hibernated conn", "idle_conns", "bytes_per_hibernated_conn", _kib, False),
    ("idle conns held", "idle_conns", "opened", _num(0), True),
    ("RSS before (MiB)", "idle_conns", "rss_before_mib", _num(1), False),
    ("RTT p50, alternating (us)", "latency_alternating", "p50_us", _num(0), False),
    ("RTT p90, alternating (us)", "latency_alternating", "p90_us", _num(0), False),
    ("RTT p99, alternating (us)", "latency_alternating", "p99_us", _num(0), False),
]
# The scenarios whose figures swing with the machine from round to round.
PAIRED_SCENARIOS = {"echo_c100_d1", "echo_c100_d8", "latency_c1", "latency_alternating"}
NOT_RATIOS = {"bytes_per_hibernated_conn", "opened", "rss_before_mib", "p90_us"}
TABLES = [
    ("Echo throughput (32-byte text messages)", COLUMNS[0:4]),
    ("Latency, large messages, new connections", COLUMNS[4:10]),
    ("Memory (server RSS)", COLUMNS[10:14]),
    ("Latency, every server up at once (alternating)", COLUMNS[14:17]),
]


def latest_results() -> Path:
    # Suite runs are named by their UTC start time; other results (wake-*.json) are not.
    files = sorted(p for p in RESULTS_DIR.glob("[0-9]*T*Z.json") if p.is_file())
    if not files:
        raise SystemExit(f"no results in {RESULTS_DIR}: run `make bench` first")
    return files[-1]


def _stat(entry: dict[str, Any], scenario: str, metric: str) -> dict[str, float] | None:
    value = entry.get("summary", {}).get(scenario, {}).get(metric)
    return value if isinstance(value, dict) else None


def _client_bound(entry: dict[str, Any], scenario: str) -> bool:
    util = _stat(entry, scenario, "client_cpu_util")
    return util is not None and util["median"] > CLIENT_BOUND


def _cell(entry: dict[str, Any], scenario: str, metric: str, fmt: Callable[[float], str]) -> str:
    s = _stat(entry, scenario, metric)
    if s is None:
        return "-"
    mark = " †" if _client_bound(entry, scenario) else ""
    if s["n"] > 1:
        return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])}){mark}"
    return f"{fmt(s['median'])}{mark}"


def _row_label(name: str, entry: dict[str, Any]) -> str:
    return str(entry.get("label", name))


def _table(
    servers: dict[str, Any], columns: list[tuple[str, str, str, Callable[[float], str], bool]]
) -> list[str]:
    head = ["server", *(c[0] for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in servers.items():
        cells = [_cell(entry, scen, metric, fmt) for _, scen, metric, fmt, _ in columns]
        if all(c == "-" for c in cells) and not any(
            "_skipped" not in r for r in entry.get("rounds", [])
        ):
            cells = ["skipped"] * len(cells)
        lines.append("| " + " | ".join([_row_label(name, entry), *cells]) + " |")
    return lines


def _paired_ratio(our: dict[str, Any], peer: dict[str, Any], scen: str, metric: str) -> str:
    """Median over rounds of our figure / the peer's in the same round.

    Servers run one after the other within a round, so a slow spell of the machine
    tends to hit both sides of a round's ratio; the ratio of medians pairs figures
    from different rounds.
    """
    ratios = []
    for a, b in zip(our.get("rounds", []), peer.get("rounds", []), strict=False):
        x = a.get(scen, {}).get(metric) if isinstance(a.get(scen), dict) else None
        y = b.get(scen, {}).get(metric) if isinstance(b.get(scen), dict) else None
        if isinstance(x, int | float) and isinstance(y, int | float) and y:
            ratios.append(x / y)
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def _ratio_table(servers: dict[str, Any], paired: bool = False) -> list[str]:
    ours = [n for n, e in servers.items() if e.get("group") == "stateroom"]
    peers = [n for n, e in servers.items() if e.get("group") != "stateroom"]
    cols = [c for c in COLUMNS if c[2] not in NOT_RATIOS]
    if paired:
        cols = [c for c in cols if c[1] in PAIRED_SCENARIOS]
    # Scenarios this run did not have get no column.
    cols = [c for c in cols if any(_stat(e, c[1], c[2]) for e in servers.values())]
    head = ["stateroom / peer", *(f"{c[0]} {'↑' if c[4] else '↓'}" for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for our in ours:
        for peer in peers:
            cells = []
            for _, scen, metric, _, _ in cols:
                if paired:
                    cells.append(_paired_ratio(servers[our], servers[peer], scen, metric))
                    continue
                a = _stat(servers[our], scen, metric)
                b = _stat(servers[peer], scen, metric)
                if a is None or b is None or b["median"] == 0:
                    cells.append("-")
                else:
                    cells.append(f"{a['median'] / b['median']:.2f}")
            if all(c == "-" for c in cells):
                continue
            label = f"{servers[our].get('label', our)} / {servers[peer].get('label', peer)}"
            lines.append("| " + " | ".join([label, *cells]) + " |")
    if len(lines) == 2:
        lines.append("| (no stateroom figures in this run) |" + " |" * len(cols))
    return lines


def _notes(data: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    for name, entry in data["servers"].items():
        seen: set[str] = set()
        for i, r in enumerate(entry.get("rounds", []), 1):
            for key in ("_skipped", "_error"):
                if key in r and r[key] not in seen:
                    seen.add(r[key])
                    verb = "skipped" if key == "_skipped" else "error"
                    notes.append(f"- {name}, round {i}: {verb}: {r[key][:300]}")
            for scen, value in r.items():
                if isinstance(value, dict) and "error" in value and value["error"] not in seen:
                    seen.add(value["error"])
                    notes.append(f"- {name}, round {i}, {scen}: {value['error'][:300]}")
                if isinstance(value, dict) and value.get("close_timeouts"):
                    notes.append(
                        f"- {name}, round {i}, {scen}: {value['close_timeouts']} closes where"
                        " the server did not close TCP within 1 s"
                    )
                if isinstance(value, dict) and value.get("failed"):
                    notes.append(
                        f"- {name}, round {i}, {scen}: {value['failed']} connections failed to open"
                    )
    return notes


def render(data: dict[str, Any], source: str) -> str:
    m = data.get("machine", {})
    st = data.get("settings", {})
    pk = m.get("packages", {})
    servers: dict[str, Any] = data["servers"]
    out = [
        f"Run `{source}`, started {data.get('started', '?')}"
        + (" — **SMOKE RUN: not results**" if data.get("smoke") else "")
        + ".",
        "",
        f"Machine: {m.get('cpu_model', '?')}, {m.get('cpus', '?')} cores,"
        f" {m.get('mem_total_gib', '?')} GiB, Linux {m.get('kernel', '?')};"
        f" load average at start {', '.join(f'{x:.2f}' for x in m.get('loadavg_at_start', []))}."
        f" Server on core {st.get('server_core')}, load generator on core"
        f" {st.get('generator_core')}.",
        "",
        f"Versions: Python {m.get('python', '?')}, stateroom {pk.get('stateroom')},"
        f" uvloop {pk.get('uvloop')}, websockets {pk.get('websockets')},"
        f" aiohttp {pk.get('aiohttp')}, picows {pk.get('picows')},"
        f" Node {m.get('node')} with ws {m.get('ws')} (bufferutil {m.get('bufferutil')}),"
        f" workerd {m.get('workerd')};"
        f" commit {str(m.get('git_commit'))[:12]}{' (dirty tree)' if m.get('git_dirty') else ''}.",
        "",
        f"Median of {st.get('rounds', '?')} rounds (min-max);"
        f" {st.get('warmup_s')} s warm-up and {st.get('duration_s')} s measured per scenario;"
        f" idle memory at {st.get('idle_conns')} connections.",
        "",
    ]
    for title, columns in TABLES:
        if any(_stat(e, c[1], c[2]) for e in servers.values() for c in columns):
            out += [f"### {title}", "", *_table(servers, columns), ""]
    out += [
        "### stateroom / peer (ratio of medians)",
        "",
        "↑: higher is better, so a ratio above 1 favours stateroom;"
        " ↓: lower is better, so a ratio below 1 favours stateroom.",
        "",
        *_ratio_table(servers),
        "",
        "### stateroom / peer, round by round (median of per-round ratios, min-max)",
        "",
        "Each round's figure divided by the peer's in the same round: the throughput and"
        " latency figures that swing most between rounds on a shared machine.",
        "",
        *_ratio_table(servers, paired=True),
        "",
    ]
    footnotes = []
    if any("†" in line for line in out):
        footnotes.append(
            f"† the load generator used over {CLIENT_BOUND:.0%} of its core: the figure may be"
            " the generator's limit rather than the server's; the per-CPU-second figure holds."
        )
    notes = _notes(data)
    if data.get("notes"):
        notes.append(f"- {data['notes']}")
    if footnotes:
        out += [*footnotes, ""]
    if notes:
        out += ["Notes:", "", *notes, ""]
    return "\n".join(out).rstrip() + "\n"


def update_readme(section: str, readme: Path = README) -> None:
    text = readme.read_text() if readme.exists() else ""
    block = f"{START}\n{section}{END}"
    if START in text and END in text:
        before = text.split(START, 1)[0]
        after = text.split(END, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("results", nargs="?", type=Path, help="results JSON (default: the latest)")
    p.add_argument("--print", action="store_true", help="print the tables, leave the README")
    p.add_argument("--readme", type=Path, default=README)
    args = p.parse_args(argv)
    path: Path = args.results or latest_results()
    data = json.loads(path.read_text())
    try:
        source = str(path.resolve().relative_to(BENCH_DIR.parent))
    except ValueError:
        source = str(path)
    section = render(data, source)
    if args.print:
        sys.stdout.write(section)
        return 0
    if data.get("smoke"):
        raise SystemExit("refusing to put a smoke run in the README (use --print to look at it)")
    update_readme(section, args.readme)
    print(f"updated {args.readme} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
