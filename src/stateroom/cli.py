"""Command line: ``stateroom dev [DIR]``, ``stateroom serve [DIR]`` and ``stateroom test [DIR]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import inspect
import logging
import os
import resource
import secrets
import signal
import ssl
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from stateroom import logs, storage_commands
from stateroom.admin.app import Admin
from stateroom.api.websockets import LocalEvents, Worker
from stateroom.compiled import HOT_MODULES, compiled_modules, stale_modules
from stateroom.config import ConfigError, WorkerConfig, load_config
from stateroom.front import Front
from stateroom.reload import DEBOUNCE_S, POLL_S, Reloader, add_import_paths, load_error_text
from stateroom.runtime.actor import ActorHost
from stateroom.runtime.metrics import RuntimeMetrics
from stateroom.runtime.options import RuntimeOptions
from stateroom.runtime.watchdog import Watchdog
from stateroom.scaffold import TEMPLATES, ProjectExistsError, init_project
from stateroom.server.options import ServerOptions
from stateroom.server.server import Server
from stateroom.storage.backend import StorageBackend
from stateroom.storage.choice import close_backend, open_backend
from stateroom.storage.errors import StorageError
from stateroom.worker import WorkerRuntime

logger = logging.getLogger("stateroom")

_LOOPBACK = ("127.0.0.1", "localhost", "::1")

# Where `serve --metrics/--dashboard` reads the admin token when --admin-token is not given.
ADMIN_TOKEN_ENV = "STATEROOM_ADMIN_TOKEN"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stateroom", description="Serve Workers and Durable Objects written in Python."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("dev", "serve for development: reloads when the code changes"),
        ("serve", "serve for production: graceful shutdown on SIGTERM"),
        (
            "test",
            "run the Worker's test() handler once, as `workerd test` does; exit 1 if it fails",
        ),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "directory",
            nargs="?",
            default=".",
            help="folder with wrangler.jsonc, wrangler.json or wrangler.toml",
        )
        p.add_argument(
            "--env",
            metavar="NAME",
            help="use the configuration's [env.NAME] section (and .dev.vars.NAME)",
        )
        p.add_argument("--host", default="127.0.0.1", help="address to listen on")
        p.add_argument("--port", type=int, default=8787, help="port (0 picks a free one)")
        p.add_argument(
            "--idle-timeout",
            type=float,
            default=RuntimeOptions.idle_timeout,
            help="seconds before an idle Durable Object is evicted from memory",
        )
        p.add_argument(
            "--hibernation-timeout",
            type=float,
            default=RuntimeOptions.hibernation_timeout,
            help="seconds before an object whose only ties are hibernatable WebSockets "
            "leaves memory",
        )
        p.add_argument(
            "--block-timeout",
            type=float,
            default=RuntimeOptions.block_timeout,
            help="seconds a blockConcurrencyWhile() callback may run before its object is reset",
        )
        p.add_argument(
            "--max-message-size",
            type=int,
            default=ServerOptions.max_message_size,
            help="largest WebSocket message in bytes; larger ones close with 1009",
        )
        d = ServerOptions()
        for flag, kind, default, text in (
            ("--max-connections", int, d.max_connections, "connections beyond this get 503"),
            ("--max-header-size", int, d.max_header_size, "largest request head in bytes (431)"),
            ("--max-headers", int, d.max_headers, "most header lines in a request (431)"),
            (
                "--header-timeout",
                float,
                d.header_timeout,
                "seconds a started request has to arrive whole (slowloris guard)",
            ),
            (
                "--keep-alive-timeout",
                float,
                d.keep_alive_timeout,
                "seconds an idle keep-alive connection stays open",
            ),
            (
                "--send-timeout",
                float,
                d.send_timeout,
                "seconds a WebSocket client may leave our send queue full before it is dropped",
            ),
            (
                "--max-send-buffer",
                int,
                d.max_send_buffer,
                "bytes queued for a WebSocket client before it is dropped",
            ),
        ):
            p.add_argument(flag, type=kind, default=default, help=text)
        p.add_argument(
            "--tls-cert", metavar="FILE", help="certificate chain (PEM): serve https/wss"
        )
        p.add_argument("--tls-key", metavar="FILE", help="private key (PEM) of --tls-cert")
        p.add_argument(
            "--persist-to",
            metavar="DIR",
            help="folder for Durable Object storage (default: .stateroom/ next to wrangler.toml)",
        )
        p.add_argument(
            "--in-memory",
            action="store_true",
            help="keep Durable Object storage in memory only (lost on exit; for tests)",
        )
        p.add_argument(
            "--storage",
            default=os.environ.get("STATEROOM_STORAGE", "local"),
            metavar="STORE",
            help="where writes become durable: local (default: one group-committed log "
            "beside the data), postgresql://user:password@host:port/db (the log in "
            "PostgreSQL; the data folder is a cache), files (an fsync per object commit), "
            "memory (env STATEROOM_STORAGE)",
        )
        p.add_argument(
            "--compress-threshold",
            type=int,
            default=ServerOptions.compress_threshold,
            help="permessage-deflate: messages shorter than this many bytes go uncompressed "
            "(0: every message, as workerd)",
        )
        p.add_argument(
            "--test-scheduled",
            action="store_true",
            help="serve GET /__scheduled?cron=... to run scheduled() now (always on in dev)",
        )
        p.add_argument(
            "--alarm-retry-delay",
            type=float,
            default=RuntimeOptions.alarm_retry_delay,
            help="seconds before the first retry of a failed alarm() (doubles each retry)",
        )
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
        p.add_argument(
            "--log-format",
            default="text",
            choices=["text", "json"],
            help="json: one JSON object per line (level, logger, message, object, request id)",
        )
        p.add_argument(
            "--access-log",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="log each request (method, path, status, duration) on stateroom.access "
            "(default: on in dev, off in serve)",
        )
        p.add_argument(
            "--metrics",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Prometheus metrics at /__stateroom/metrics (default: on in dev, off in serve; "
            "serve needs --admin-token)",
        )
        p.add_argument(
            "--dashboard",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="the live dashboard at /__stateroom/ (default: on in dev, off in serve; "
            "serve needs --admin-token)",
        )
        p.add_argument(
            "--admin-token",
            metavar="TOKEN",
            help=f"token /__stateroom/ requires (Authorization: Bearer TOKEN or ?token=TOKEN); "
            f"default: ${ADMIN_TOKEN_ENV}",
        )
        p.add_argument(
            "--cpu-limit",
            type=float,
            default=RuntimeOptions.cpu_limit,
            help="seconds a handler may hold the event loop before its object is reset "
            "(Cloudflare's CPU limit, 30; 0: never)",
        )
        p.add_argument(
            "--lag-threshold",
            type=float,
            default=RuntimeOptions.lag_threshold,
            help="event-loop stalls longer than this many seconds are logged with their culprit",
        )
        p.add_argument(
            "--reload-poll",
            type=float,
            default=POLL_S,
            help="dev: seconds between checks of the Worker's files",
        )
        p.add_argument(
            "--reload-debounce",
            type=float,
            default=DEBOUNCE_S,
            help="dev: a change reloads once the files have been still this many seconds",
        )
    init = sub.add_parser(
        "init",
        help="make a new project from a template (with a test that passes)",
        description="make a new project from a template (with a test that passes)",
    )
    init.add_argument("directory", nargs="?", default=".", help="a new or empty folder")
    init.add_argument("--template", choices=TEMPLATES, default="websocket-server")
    storage_commands.add_parser(sub)
    return parser


def _init(directory: str, template: str) -> int:
    try:
        made = init_project(directory, template)
    except ProjectExistsError as exc:
        logger.error("%s", exc)
        return 2
    where = Path(directory)
    logger.info("made %d files in %s from the %s template:", len(made), where, template)
    for path in made:
        logger.info("  %s", path)
    logger.info("next: stateroom dev %s    (and: cd %s && pytest)", where, where)
    return 0


# glibc mallopt() parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _tune_malloc() -> None:
    """Stop glibc from handing message-sized buffers back to the kernel after each use.

    glibc adapts its mmap threshold and trims the heap top as memory is freed; after a
    burst of connections it can end up mapping and unmapping (or trimming and regrowing)
    memory for every large message, so each 64 KiB echo pays page faults: measured here,
    a 4x drop in 64 KiB throughput, almost all of it kernel time. Fixed thresholds keep
    buffers below 1 MiB on the heap and keep up to 16 MiB of free heap for reuse.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 16 * 1024 * 1024)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "init":
        logs.configure("info", "text")
        return _init(args.directory, args.template)
    if args.command == "storage":
        logs.configure("info", "text")
        return storage_commands.run(args)
    _tune_malloc()
    logs.configure(args.log_level, args.log_format)
    _report_build()
    try:
        if args.command == "test":
            return _run_test(args)
        _run(_serve(args))
    except (ConfigError, StorageError) as exc:
        logger.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _report_build() -> None:
    compiled = compiled_modules()
    if len(compiled) < len(HOT_MODULES):
        logger.warning(
            "the WebSocket hot path runs as pure Python (%d of %d modules compiled): "
            "expect lower throughput; install a C compiler and reinstall stateroom "
            "to compile it with mypyc",
            len(compiled),
            len(HOT_MODULES),
        )
    for source in stale_modules():
        logger.warning(
            "%s changed after it was compiled; the old compiled code runs until you "
            "reinstall (pip install -e .)",
            source,
        )


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed (it is a dependency on every POSIX system)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _load(args: argparse.Namespace) -> WorkerConfig:
    """The configuration, with the Worker's folders importable.

    ``stateroom serve`` refuses to start without the secrets in ``secrets.required``;
    ``stateroom dev`` warns, as ``wrangler dev`` does.
    """
    config = load_config(args.directory, args.env, require_secrets=args.command == "serve")
    logger.info(
        "%s%s", config.path, f" [env.{config.env_name}]" if config.env_name is not None else ""
    )
    add_import_paths(config)
    return config


def _admin_settings(args: argparse.Namespace) -> tuple[bool, bool, str | None]:
    """(metrics on, dashboard on, token): on in dev, opt-in with a token in serve."""
    dev = args.command == "dev"
    metrics = dev if args.metrics is None else args.metrics
    dashboard = dev if args.dashboard is None else args.dashboard
    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
    if (metrics or dashboard) and not dev and token is None:
        raise ConfigError(
            "--metrics and --dashboard need a token in `stateroom serve`: give "
            f"--admin-token TOKEN (or set {ADMIN_TOKEN_ENV}); requests to /__stateroom/ "
            "must then carry it (Authorization: Bearer TOKEN, or ?token=TOKEN)"
        )
    if (metrics or dashboard) and token is None and args.host not in _LOOPBACK:
        # dev on a network address: the dashboard browses storage, so it gets a token too.
        token = secrets.token_urlsafe(16)
        logger.warning(
            "dev listens on %s: /__stateroom/ needs a token; this run's is %s "
            "(--admin-token to choose one)",
            args.host,
            token,
        )
    return metrics, dashboard, token


def _raise_file_limit() -> None:
    """Open files are sockets and object databases: take the hard limit, not the soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _serve(args: argparse.Namespace) -> None:
    dev = args.command == "dev"
    metrics_on, dashboard_on, token = _admin_settings(args)
    metrics = RuntimeMetrics(enabled=metrics_on or dashboard_on)
    _raise_file_limit()
    runtime_options = RuntimeOptions(
        idle_timeout=args.idle_timeout,
        hibernation_timeout=args.hibernation_timeout,
        block_timeout=args.block_timeout,
        alarm_retry_delay=args.alarm_retry_delay,
        test_scheduled=args.command == "dev" or args.test_scheduled,
        cpu_limit=args.cpu_limit or None,
        lag_threshold=args.lag_threshold,
        metrics=metrics,
    )
    server_options = ServerOptions(
        max_message_size=args.max_message_size,
        max_connections=args.max_connections,
        max_header_size=args.max_header_size,
        max_headers=args.max_headers,
        header_timeout=args.header_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        send_timeout=args.send_timeout,
        max_send_buffer=args.max_send_buffer,
        compress_threshold=args.compress_threshold,
        # Tracebacks in 500s are for development only: serve logs them with a request id.
        debug_errors=dev,
        access_log=dev if args.access_log is None else args.access_log,
    )
    ssl_context = _tls_context(args.tls_cert, args.tls_key)
    root = Path(args.directory).resolve()
    config: WorkerConfig | None = None
    front = Front(None, metrics)
    try:
        config = _load(args)
        root = config.root
        backend = await _backend(args, root)
        runtime = WorkerRuntime(config, runtime_options, backend)
        runtime.start()
        front.runtime = runtime
    except Exception as exc:
        if not dev:
            raise
        # dev goes on: every request gets the error until a save fixes it.
        if config is None:
            backend = await _backend(args, root)
        front.error = load_error_text(exc)
        logger.error(
            "the Worker does not load; every request is answered with this error until it "
            "is fixed (watching for changes):\n%s",
            front.error,
        )
    if config is not None:
        server_options.allowed_origins = config.allowed_origins
    # serve without the admin surface keeps the runtime as the server's worker, as before.
    worker: Worker = front
    if not (dev or metrics_on or dashboard_on) and front.runtime is not None:
        worker = front.runtime
    server = Server(
        LocalEvents(worker),
        host=args.host,
        port=args.port,
        options=server_options,
        ssl_context=ssl_context,
    )
    if metrics_on or dashboard_on:
        front.admin = Admin(
            front, lambda: server, token=token, metrics=metrics_on, dashboard=dashboard_on
        )
    await server.start()
    if dashboard_on:
        logger.info(
            "dashboard: %s://%s:%d/__stateroom/%s",
            server.scheme,
            args.host,
            server.port,
            "?token=<--admin-token>" if token is not None else "",
        )
    watchdog = Watchdog(
        lambda: _live_hosts(front),
        metrics,
        cpu_limit=runtime_options.cpu_limit,
        lag_threshold=runtime_options.lag_threshold,
    )
    watchdog.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    watcher = None
    if dev:
        reloader = Reloader(
            server,
            front,
            root,
            args.env,
            runtime_options,
            backend,
            poll=args.reload_poll,
            debounce=args.reload_debounce,
        )
        watcher = asyncio.create_task(reloader.run())
    await stop.wait()
    logger.info("shutting down")
    if watcher is not None:
        watcher.cancel()
    watchdog.stop()
    await server.shutdown()  # shuts the Worker (and the admin surface) down too
    await close_backend(backend)


async def _backend(args: argparse.Namespace, root: Path) -> StorageBackend:
    return await open_backend(
        "memory" if args.in_memory else args.storage, args.persist_to or root / ".stateroom"
    )


def _live_hosts(front: Front) -> list[ActorHost]:
    runtime = front.runtime
    if runtime is None:
        return []
    return [host for ns in list(runtime.namespaces.values()) for host in list(ns.hosts.values())]


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None:
        raise ConfigError("--tls-key needs --tls-cert (the certificate chain, PEM)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--tls-cert {cert} / --tls-key {key}: cannot load the certificate and key: {exc}"
        ) from None
    return context


class TestController:
    """What a ``test()`` handler receives as ``ctrl`` (workerd passes a controller too)."""

    def __repr__(self) -> str:
        return "TestController()"


def _run_test(args: argparse.Namespace) -> int:
    """``stateroom test DIR``: construct the Worker, await ``Default.test()``, report."""
    failed: list[BaseException] = []

    async def main() -> None:
        config = _load(args)
        backend = await open_backend(
            "memory" if args.in_memory or not args.persist_to else args.storage,
            args.persist_to,
        )
        runtime = WorkerRuntime(
            config,
            RuntimeOptions(
                idle_timeout=args.idle_timeout,
                hibernation_timeout=args.hibernation_timeout,
                alarm_retry_delay=args.alarm_retry_delay,
            ),
            backend,
        )
        runtime.start()
        handler = getattr(runtime.entrypoint, "test", None)
        if handler is None:
            raise ConfigError(
                f"{config.main}: Default defines no test() handler for `stateroom test`"
            )
        arity = len(inspect.signature(handler).parameters)
        context = (TestController(), runtime.env, runtime.ctx)[:arity]
        try:
            result = handler(*context)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            logger.error("test() failed", exc_info=exc)
            failed.append(exc)
        finally:
            await runtime.shutdown()
            await close_backend(backend)

    _run(main())
    if failed:
        logger.error("FAIL %s", args.directory)
        return 1
    logger.info("PASS %s", args.directory)
    return 0
