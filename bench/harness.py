"""Bench harness: the servers, the load generator, and /proc accounting.

Library code for `bench.run` and `bench.profile`: it starts each server pinned to
one core, drives it with the compiled load generator (`bench/loadgen.c`) pinned to
another, and reads the server's CPU time and memory from /proc. Nothing here
prints; the scripts do.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"
LOG_DIR = BUILD_DIR / "logs"
RESULTS_DIR = BENCH_DIR / "results"
LOADGEN_SRC = BENCH_DIR / "loadgen.c"
LOADGEN_BIN = BUILD_DIR / "loadgen"
SERVERS_DIR = BENCH_DIR / "servers"
NODE_DIR = BENCH_DIR / "node"

HOST = "127.0.0.1"
WS_PATH = "/websocket"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """A server or a load run failed; the message says why."""


class ServerSkipped(BenchError):
    """A server cannot run here (not built yet, not installed, failed to start)."""


# --------------------------------------------------------------------------- cores


@dataclass(frozen=True)
class Cores:
    """Which cores the server and the load generator run on (None: no pinning)."""

    server: int | None
    generator: int | None

    @staticmethod
    def detect() -> Cores:
        available = sorted(os.sched_getaffinity(0))
        if len(available) < 2:
            return Cores(None, None)
        return Cores(available[0], available[1])

    def prefix(self, core: int | None) -> list[str]:
        if core is None or shutil.which("taskset") is None:
            return []
        return ["taskset", "-c", str(core)]


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """The root and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # fields[0] is state (field 3 of stat); utime, stime are fields 14, 15
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    """Resident set size of the processes, summed (shared pages count once each)."""
    total = 0
    for pid in pids:
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * PAGE_SIZE
    return total


def pin_tree(root: int, core: int | None) -> None:
    """Pin every thread of the process tree to one core (for servers we did not exec)."""
    if core is None:
        return
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), {core})


def fd_counts(pids: list[int]) -> dict[int, int]:
    """Open file descriptors of each process."""
    counts: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            counts[pid] = len(os.listdir(f"/proc/{pid}/fd"))
    return counts


def nofile_limit(pid: int) -> int | None:
    """The soft RLIMIT_NOFILE of a process, from /proc/PID/limits."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def affinity(pids: list[int]) -> list[str]:
    """The distinct Cpus_allowed_list values of every thread of the processes."""
    seen: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    for line in (task / "status").read_text().splitlines():
                        if line.startswith("Cpus_allowed_list:"):
                            seen.add(line.split(":", 1)[1].strip())
    return sorted(seen)


def listening_pid(port: int) -> int | None:
    """The process that owns the TCP socket listening on 127.0.0.1:port (or any address)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        return int(entry.name)
    return None


def raise_nofile_limit(want: int = 65_536) -> int:
    """Raise RLIMIT_NOFILE (children inherit it): to `want` where allowed, else to the hard limit.

    Some servers hold two descriptors per WebSocket (workerd does), so 10,000 idle
    connections need more than 20,000.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        with contextlib.suppress(ValueError, OSError):  # raising the hard limit needs root
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise ServerSkipped("exited before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerSkipped(f"did not listen on {HOST}:{port} within {timeout:.0f}s")


# --------------------------------------------------------------------------- servers


@dataclass
class RunningServer:
    name: str
    pid: int  # root of the measured process tree
    port: int
    path: str
    log: Path | None

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def alive(self) -> bool:
        fields = _stat_fields(self.pid)
        return fields is not None and fields[0] not in ("Z", "X")


@dataclass
class ServerSpec:
    """One contender. `launch` starts it pinned to a core and yields it running."""

    name: str
    label: str
    group: str  # "stateroom", "reference" or "peer"
    launch: Callable[[Cores], contextlib.AbstractContextManager[RunningServer]]
    python: bool = False  # py-spy can profile it
    hibernation: bool = False
    note: str = ""


def _log_tail(log: Path, limit: int = 1500) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()


def _terminate(proc: subprocess.Popen[bytes], tree: list[int]) -> None:
    """Stop a server we started, and any children it left behind, by PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    for pid in tree:
        if pid == proc.pid:
            continue
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _subprocess_server(
    name: str, argv: list[str], cores: Cores, cwd: Path, path: str = WS_PATH
) -> Iterator[RunningServer]:
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    full = cores.prefix(cores.server) + [a.replace("{port}", str(port)) for a in argv]
    with log.open("wb") as log_file:
        try:
            proc = subprocess.Popen(
                full, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            raise ServerSkipped(f"cannot start: {exc}") from exc
        tree = [proc.pid]
        try:
            try:
                wait_listening(port, START_TIMEOUT_S, lambda: proc.poll() is None)
            except ServerSkipped as exc:
                tail = _log_tail(log)
                raise ServerSkipped(f"{exc}; log: {tail}" if tail else str(exc)) from None
            pin_tree(proc.pid, cores.server)  # threads or children started before pinning
            yield RunningServer(name, proc.pid, port, path, log)
        finally:
            tree = process_tree(proc.pid)
            _terminate(proc, tree)


def _python_server(name: str, script: str) -> Callable[[Cores], Any]:
    def launch(cores: Cores) -> contextlib.AbstractContextManager[RunningServer]:
        argv = [sys.executable, str(SERVERS_DIR / script), "--port", "{port}"]
        return _subprocess_server(name, argv, cores, REPO_DIR)

    return launch


def _stateroom(name: str, example: str) -> Callable[[Cores], Any]:
    def launch(cores: Cores) -> contextlib.AbstractContextManager[RunningServer]:
        app = REPO_DIR / "examples" / example
        if not app.is_dir():
            raise ServerSkipped(f"examples/{example} does not exist yet")
        argv = [sys.executable, "-m", "stateroom", "serve", f"examples/{example}", "--in-memory"]
        return _subprocess_server(name, [*argv, "--port", "{port}"], cores, REPO_DIR)

    return launch


def _node_ws(cores: Cores) -> contextlib.AbstractContextManager[RunningServer]:
    node = shutil.which("node")
    if node is None:
        raise ServerSkipped("node is not installed")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        raise ServerSkipped("bench/node/node_modules is missing: run `npm ci` in bench/node")
    argv = [node, str(SERVERS_DIR / "node_ws_echo.mjs"), "--port", "{port}"]
    return _subprocess_server("node-ws", argv, cores, REPO_DIR)


@contextlib.contextmanager
def _workerd(cores: Cores) -> Iterator[RunningServer]:
    # Reuse the parity tests' launcher (tests/reference_runtime.py): one way to run
    # the reference. It yields (host, port); the PID comes from the listening socket.
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))
    try:
        from tests.reference_runtime import running_workerd
    except ImportError as exc:
        raise ServerSkipped(f"tests/reference_runtime.py is not importable: {exc}") from None
    with contextlib.ExitStack() as stack:
        try:
            host, port = stack.enter_context(running_workerd())
        except Exception as exc:  # not installed, or failed to start
            raise ServerSkipped(f"workerd did not start: {str(exc)[:600]}") from None
        pid = listening_pid(port)
        if pid is None:
            raise ServerSkipped(f"no process found listening on {host}:{port}")
        pin_tree(pid, cores.server)
        yield RunningServer("workerd", pid, port, WS_PATH, None)


def all_servers() -> list[ServerSpec]:
    """Every contender, in the order they alternate within a round."""
    return [
        ServerSpec(
            "stateroom",
            "stateroom (websocket-server)",
            "stateroom",
            _stateroom("stateroom", "websocket-server"),
            python=True,
        ),
        # HIBERNATION HOOK: skipped until examples/websocket-hibernation exists. Its idle
        # test reads RSS again after --hibernation-wait seconds (default 12) of silence;
        # if stateroom hibernates on another trigger, change run_hold's later_wait_s step.
        ServerSpec(
            "stateroom-hibernation",
            "stateroom (websocket-hibernation)",
            "stateroom",
            _stateroom("stateroom-hibernation", "websocket-hibernation"),
            python=True,
            hibernation=True,
        ),
        ServerSpec("workerd", "workerd (JS original)", "reference", _workerd),
        ServerSpec(
            "picows",
            "picows + uvloop",
            "peer",
            _python_server("picows", "picows_echo.py"),
            python=True,
        ),
        ServerSpec("node-ws", "Node ws", "peer", _node_ws),
        ServerSpec(
            "aiohttp",
            "aiohttp + uvloop",
            "peer",
            _python_server("aiohttp", "aiohttp_echo.py"),
            python=True,
        ),
        ServerSpec(
            "websockets",
            "websockets + uvloop",
            "peer",
            _python_server("websockets", "websockets_echo.py"),
            python=True,
        ),
    ]


# --------------------------------------------------------------------------- load generator


def build_loadgen(force: bool = False) -> Path:
    """Compile bench/loadgen.c with gcc (or cc) unless the binary is up to date."""
    if (
        not force
        and LOADGEN_BIN.exists()
        and LOADGEN_BIN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime
    ):
        return LOADGEN_BIN
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise BenchError("no C compiler (gcc or cc) to build the load generator")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    cmd = [compiler, "-O2", "-Wall", "-Wextra", "-std=gnu11", "-o", str(LOADGEN_BIN)]
    done = subprocess.run([*cmd, str(LOADGEN_SRC)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"building the load generator failed:\n{done.stderr}")
    return LOADGEN_BIN


@dataclass
class LoadRun:
    """One load generator run: its RESULT plus the server's CPU time in the window."""

    result: dict[str, Any]
    server_cpu_s: float
    window_s: float
    stderr: str = ""


@dataclass
class Scenario:
    name: str
    title: str
    mode: str  # echo | connect | hold
    conns: int = 100
    inflight: int = 1
    size: int = 32
    open_concurrency: int = 64
    extra: dict[str, Any] = field(default_factory=dict)


def _loadgen_cmd(
    cores: Cores, mode: str, path: str, warmup: float, duration: float, *flags: str
) -> list[str]:
    """The load generator pinned to its core, in ``mode``, with ``flags`` for that mode."""
    return [
        *cores.prefix(cores.generator),
        str(LOADGEN_BIN),
        "--mode",
        mode,
        "--host",
        HOST,
        "--path",
        path,
        *flags,
        "--warmup",
        f"{warmup:g}",
        "--duration",
        f"{duration:g}",
    ]


def _loadgen_argv(
    cores: Cores, server: RunningServer, scenario: Scenario, warmup: float, duration: float
) -> list[str]:
    return _loadgen_cmd(
        cores,
        scenario.mode,
        server.path,
        warmup,
        duration,
        "--port",
        str(server.port),
        "--conns",
        str(scenario.conns),
        "--inflight",
        str(scenario.inflight),
        "--size",
        str(scenario.size),
        "--open-concurrency",
        str(scenario.open_concurrency),
    )


class _LineReader:
    """Lines from a pipe, with a deadline (the generator must never hang the run)."""

    def __init__(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._buf = b""
        self._deadline = deadline

    def readline(self) -> str | None:
        while b"\n" not in self._buf:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise BenchError("load generator timed out")
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._fd, 65536)
            if not chunk:
                if self._buf:
                    line, self._buf = self._buf, b""
                    return line.decode()
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()


def _finish(proc: subprocess.Popen[bytes]) -> str:
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    assert proc.stderr is not None
    return proc.stderr.read().decode(errors="replace")[-2000:]


def run_load(
    cores: Cores,
    server: RunningServer,
    scenario: Scenario,
    warmup: float,
    duration: float,
    setup_timeout: float = 60.0,
) -> LoadRun:
    """Run an echo or connect scenario; sample the server's CPU at START and END."""
    argv = _loadgen_argv(cores, server, scenario, warmup, duration)
    deadline = time.monotonic() + setup_timeout + warmup + duration + 15
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reader = _LineReader(proc, deadline)
    cpu_start = cpu_end = 0.0
    t_start = t_end = 0.0
    result: dict[str, Any] | None = None
    try:
        while (line := reader.readline()) is not None:
            if line.startswith("START"):
                t_start = time.monotonic()
                cpu_start = cpu_seconds(server.pids())
            elif line.startswith("END"):
                cpu_end = cpu_seconds(server.pids())
                t_end = time.monotonic()
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
    finally:
        if proc.poll() is None and time.monotonic() > deadline:
            proc.kill()
        stderr = _finish(proc)
    if result is None or proc.returncode != 0:
        reason = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {proc.returncode}"
        raise BenchError(f"load generator failed: {reason}")
    return LoadRun(result, cpu_end - cpu_start, t_end - t_start, stderr)


def run_alternating(
    cores: Cores, servers: list[RunningServer], block: int, warmup: float, duration: float
) -> dict[str, dict[str, Any]]:
    """Round trips to every server at once, one message in flight in all: latency per server.

    One connection to each; ``block`` echoes on one, then the next. Servers measured
    one after another in a round can meet different weather on a shared VM; here
    each meets the same stretch of it, a few milliseconds at a time. Returns the
    load generator's latency figures (ns) by server name.
    """
    paths = {s.path for s in servers}
    if len(paths) != 1:
        raise BenchError(f"alternating servers need one WebSocket path, not {sorted(paths)}")
    ports = ",".join(str(s.port) for s in servers)
    argv = _loadgen_cmd(
        cores, "alternate", paths.pop(), warmup, duration, "--ports", ports, "--block", str(block)
    )
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=warmup + duration + 90,
    )
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not results:
        tail = done.stderr.strip().splitlines()
        raise BenchError(
            f"load generator failed: {tail[-1] if tail else f'exit {done.returncode}'}"
        )
    by_port = {t["port"]: t for t in json.loads(results[-1][len("RESULT ") :])["targets"]}
    return {s.name: by_port[s.port] for s in servers}


@dataclass
class HoldRun:
    result: dict[str, Any]
    rss_before: int
    rss_open: int
    rss_later: int | None  # after waiting for hibernation, when asked
    opened: int
    failed: int
    fds_before: dict[int, int]
    fds_open: dict[int, int]


def run_hold(
    cores: Cores,
    server: RunningServer,
    conns: int,
    open_concurrency: int,
    settle_s: float,
    later_wait_s: float | None,
    setup_timeout: float = 120.0,
) -> HoldRun:
    """Open `conns` idle connections (one echo each), read the server's RSS, release them."""
    scenario = Scenario("idle", "idle", "hold", conns=conns, open_concurrency=open_concurrency)
    argv = _loadgen_argv(cores, server, scenario, 0, 1)
    hold_cap = setup_timeout + settle_s + (later_wait_s or 0) + 30
    argv += ["--setup-seconds", f"{setup_timeout:g}", "--hold-seconds", f"{hold_cap:g}"]
    rss_before = rss_bytes(server.pids())
    fds_before = fd_counts(server.pids())
    fds_open: dict[int, int] = {}
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reader = _LineReader(proc, time.monotonic() + setup_timeout + hold_cap + 15)
    rss_open = 0
    rss_later: int | None = None
    opened = failed = 0
    result: dict[str, Any] | None = None
    try:
        while (line := reader.readline()) is not None:
            if line.startswith("READY"):
                _, opened_s, failed_s = line.split()
                opened, failed = int(opened_s), int(failed_s)
                time.sleep(settle_s)
                rss_open = rss_bytes(server.pids())
                fds_open = fd_counts(server.pids())
                if later_wait_s is not None:
                    time.sleep(later_wait_s)
                    rss_later = rss_bytes(server.pids())
                assert proc.stdin is not None
                proc.stdin.close()  # ends the hold
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
    finally:
        if proc.poll() is None and proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        stderr = _finish(proc)
    if result is None:
        reason = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {proc.returncode}"
        raise BenchError(f"load generator failed: {reason}")
    return HoldRun(result, rss_before, rss_open, rss_later, opened, failed, fds_before, fds_open)


def idle_capacity(cores: Cores, server: RunningServer, open_concurrency: int) -> tuple[int, int]:
    """How many idle connections the server's descriptor limit allows: (count, fds per conn).

    Opens 100 connections and counts the descriptors each server process gained: some
    servers (workerd) hold two per WebSocket, and a server that runs out of descriptors
    may drop every connection, so the idle test must stay below the limit.
    """
    probe = run_hold(cores, server, 100, open_concurrency, 0.2, None, setup_timeout=30)
    if probe.opened == 0:
        raise BenchError(f"no connection opened: {probe.result.get('first_error')}")
    per_conn = 1
    room: int | None = None
    for pid, after in probe.fds_open.items():
        before = probe.fds_before.get(pid, 0)
        per_conn = max(per_conn, math.ceil((after - before) / probe.opened - 0.1))
        limit = nofile_limit(pid)
        if limit is not None:
            left = limit - before - 200
            room = left if room is None else min(room, left)
    if room is None:
        return 1_000_000, per_conn
    return max(room // per_conn, 0), per_conn


# --------------------------------------------------------------------------- versions


def _run_text(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _package_json_version(path: Path) -> str | None:
    try:
        version = json.loads(path.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


def machine_info() -> dict[str, Any]:
    import platform
    from importlib import metadata

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
    packages: dict[str, str | None] = {}
    for name in ("stateroom", "httptools", "uvloop", "websockets", "aiohttp", "picows", "py-spy"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    gcc = _run_text([shutil.which("gcc") or "cc", "--version"]).splitlines()
    return {
        "kernel": platform.release(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "mem_total_gib": round(mem_total_kib / 2**20, 1),
        "loadavg_at_start": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "packages": packages,
        "node": _run_text(["node", "--version"]) or None,
        "ws": _package_json_version(NODE_DIR / "node_modules" / "ws" / "package.json"),
        "bufferutil": _package_json_version(
            NODE_DIR / "node_modules" / "bufferutil" / "package.json"
        ),
        "workerd": _package_json_version(
            REPO_DIR / "reference" / "node_modules" / "workerd" / "package.json"
        ),
        "gcc": gcc[0] if gcc else None,
        "git_commit": _run_text(["git", "rev-parse", "HEAD"], cwd=REPO_DIR) or None,
        "git_dirty": bool(_run_text(["git", "status", "--porcelain"], cwd=REPO_DIR)),
    }
