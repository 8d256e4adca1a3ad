"""nginx and HAProxy in front of a stateroom server, for tests: the README's configurations.

``run_proxy(kind, upstream)`` starts Debian's nginx or haproxy (``make proxies`` installs
them) in the foreground on an ephemeral loopback port, with every file it writes in a
temporary folder, proxying to a ``support.serve`` server; it returns once the proxy
accepts connections, and stops it by its PID when the block ends.

``nginx_config`` and ``haproxy_config`` are the configurations README.md recommends
(section "Running behind a reverse proxy"), plus what only a test needs: the temporary
paths, and an example ``/admin`` deny rule that the smuggling probes try to get past.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from support import RunningServer, stop

log = logging.getLogger("tests.proxies")

KINDS = ("nginx", "haproxy")
START_TIMEOUT_S = 10.0

# The test-only rule of each configuration: what the probes must not get past.
NGINX_ADMIN_RULE = """
        # Example of a rule the proxy enforces (test-only): /admin is not for the public.
        location /admin {
            return 403;
        }
"""
HAPROXY_ADMIN_RULE = """
    # Example of a rule the proxy enforces (test-only): /admin is not for the public.
    http-request deny if { path_beg /admin }
"""


def binary(kind: str) -> str:
    """The proxy's executable: on PATH, or in /usr/sbin (not on a non-root PATH)."""
    found = shutil.which(kind) or shutil.which(kind, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(f"{kind} is not installed: `make proxies` installs it")
    return found


def nginx_config(listen: str, upstream_port: int, workdir: Path | None = None) -> str:
    """nginx on ``listen`` in front of stateroom on 127.0.0.1:upstream_port.

    With ``workdir`` (the tests), the proxy runs in the foreground with its pid file,
    logs and temporary files there, and the example /admin rule is added.
    """
    test = workdir is not None
    head = ""
    temp_paths = ""
    if workdir is not None:
        # As root, nginx's workers would run as "nobody", who may not write into the
        # temporary folder (0700): a test's nginx keeps the user it was started as.
        user = "user root;\n" if os.geteuid() == 0 else ""
        head = (
            f"{user}daemon off;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log info;\n"
            "# One worker, so one pool of upstream connections: what the reuse test counts.\n"
            "worker_processes 1;\n"
        )
        temp_paths = "".join(
            f"    {name}_temp_path {workdir}/{name};\n"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        temp_paths += (
            '    log_format upstreams \'$connection $connection_requests "$request" '
            "$status $upstream_addr';\n"
            f"    access_log {workdir}/access.log upstreams;\n\n"
        )
    workers = "" if test else "worker_processes auto;\n"
    return f"""{head}{workers}
events {{
    worker_connections 1024;
}}

http {{
{temp_paths}    # Upgrade and Connection are hop-by-hop: nginx passes them on only when told to.
    # An empty Connection (not "close") for plain requests keeps the upstream
    # connections below alive.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    upstream stateroom {{
        server 127.0.0.1:{upstream_port};
        keepalive 16;
        # Below stateroom's --keep-alive-timeout (60 s): nginx, not the server, closes
        # an idle connection, so no request is ever sent on one the server is closing.
        keepalive_timeout 50s;
    }}

    server {{
        listen {listen};
{NGINX_ADMIN_RULE if test else ""}
        location / {{
            proxy_pass http://stateroom;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # A WebSocket may be quiet for long: nginx closes it after this much silence.
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"""


def haproxy_config(listen: str, upstream_port: int, workdir: Path | None = None) -> str:
    """HAProxy on ``listen`` in front of stateroom on 127.0.0.1:upstream_port
    (``workdir``: as nginx_config's)."""
    test = workdir is not None
    return f"""global
    # To standard output: the journal under systemd, the test's log file here.
    log stdout format raw local0 info
    maxconn 1024

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    # Below stateroom's --keep-alive-timeout (60 s).
    timeout http-keep-alive 50s
    # A WebSocket, once upgraded, is a tunnel: this is how long it may be quiet.
    timeout tunnel 1h

frontend stateroom
    bind {listen}
    # stateroom passes paths as sent; an app that resolves "." and ".." segments (also
    # percent-encoded) as URL parsers do would be reached at /admin by /public/../admin,
    # past a rule on the raw path: refuse them here.
    http-request deny deny_status 400 if {{ path,url_dec -m reg (^|/)\\.\\.?(/|$) }}
{HAPROXY_ADMIN_RULE if test else ""}    default_backend stateroom

backend stateroom
    # HAProxy's default and its advice: idle connections to stateroom are shared by the
    # clients, but a client's first request only goes on one that has served a request.
    http-reuse safe
    server stateroom 127.0.0.1:{upstream_port}
"""


@dataclass
class RunningProxy:
    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    upstream: RunningServer
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def output(self) -> str:
        """The proxy's own log (nginx: error log; HAProxy: its log on stdout)."""
        name = "error.log" if self.kind == "nginx" else "output.log"
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        """nginx's access log: ``$connection $connection_requests "$request" $status ...``."""
        path = self.workdir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _start(
    kind: str, upstream: RunningServer, workdir: Path, edit: Callable[[str], str]
) -> RunningProxy | None:
    """One try: None when the port picked was taken meanwhile."""
    port = free_port()
    conf = workdir / f"{kind}.conf"
    out = workdir / "output.log"
    if kind == "nginx":
        conf.write_text(edit(nginx_config(f"127.0.0.1:{port}", upstream.port, workdir)))
        cmd = [
            binary("nginx"),
            "-p",
            str(workdir),
            "-c",
            str(conf),
            "-e",
            str(workdir / "error.log"),
        ]
    else:
        conf.write_text(edit(haproxy_config(f"127.0.0.1:{port}", upstream.port, workdir)))
        cmd = [binary("haproxy"), "-db", "-f", str(conf)]
    with open(out, "ab") as sink:
        proc = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir
        )
    proxy = RunningProxy(kind, proc, port, workdir, upstream)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = out.read_text(errors="replace") + proxy.output()
            if "in use" in text:
                log.info("%s: port %d was taken meanwhile, picking another", kind, port)
                return None
            raise RuntimeError(f"{kind} exited with {proc.returncode}:\n{text}")
        if _accepting(port):
            log.info("%s (pid %d) on 127.0.0.1:%d -> %s", kind, proc.pid, port, upstream.url)
            return proxy
        time.sleep(0.01)
    stop(proc)
    raise RuntimeError(f"{kind} did not accept connections:\n{proxy.output()}")


@contextlib.contextmanager
def run_proxy(
    kind: str, upstream: RunningServer, edit: Callable[[str], str] = lambda config: config
) -> Iterator[RunningProxy]:
    """``kind`` ("nginx" or "haproxy") in front of ``upstream`` until the block ends;
    ``edit`` may change the configuration (a variant the README advises against)."""
    with tempfile.TemporaryDirectory(prefix=f"stateroom-{kind}-") as tmp:
        workdir = Path(tmp)
        proxy = None
        for _ in range(5):
            proxy = _start(kind, upstream, workdir, edit)
            if proxy is not None:
                break
        if proxy is None:
            raise RuntimeError(f"{kind}: no free port after 5 tries")
        try:
            yield proxy
        finally:
            stop(proxy.proc)  # SIGTERM: both shut down at once (nginx's "fast shutdown")


def upstream_connections(upstream_port: int) -> set[int]:
    """The client-side ports of every TCP connection to 127.0.0.1:upstream_port that
    the kernel still knows about (open, closing or in TIME_WAIT): one per connection
    opened since about a minute ago, whoever closed it."""
    target = f"0100007F:{upstream_port:04X}"
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "0A":  # LISTEN
            continue
        if local == target:
            ports.add(int(remote.rsplit(":", 1)[1], 16))
        elif remote == target:
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
