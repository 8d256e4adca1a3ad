"""``stateroom dev``'s reload loop: watch the Worker's files, load the new version once per save.

The folder is polled (``poll`` seconds) for changes to ``.py`` files, the
configuration and ``.dev.vars``. A change is acted on once the files have stopped
changing for ``debounce`` seconds, so that a save made of several writes (truncate,
write, rename, a formatter run on save) reloads once.

A version that does not load (a configuration error, an exception while importing
``main``) does not stop ``dev``: ``Front`` answers every request with the error (500,
plain text) and the loop goes on watching; the next version that loads serves again.
Until then the last version that loaded keeps its objects and sockets (its
hibernatable WebSockets move to the fixed version; the others close with 1012 then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import traceback
from pathlib import Path

from stateroom.api.websockets import LocalEvents
from stateroom.config import CONFIG_NAMES, DEV_VARS, ConfigError, WorkerConfig, load_config
from stateroom.front import Front
from stateroom.protocol.frames import CLOSE_SERVICE_RESTART
from stateroom.runtime.options import RuntimeOptions
from stateroom.server.server import Server
from stateroom.storage.backend import StorageBackend
from stateroom.worker import WorkerRuntime

logger = logging.getLogger("stateroom")

POLL_S = 0.5
DEBOUNCE_S = 0.2


def snapshot(root: Path) -> dict[Path, float]:
    """Modification times of the files whose change reloads the Worker."""
    files: dict[Path, float] = {}
    for path in root.rglob("*"):
        if path.suffix in (".py", ".toml") and "/." not in str(path.relative_to(root)):
            with contextlib.suppress(OSError):
                files[path] = path.stat().st_mtime_ns
    # The configuration and its secrets, in the folder itself.
    for path in [*(root / name for name in CONFIG_NAMES), *root.glob(DEV_VARS + "*")]:
        with contextlib.suppress(OSError):
            files[path] = path.stat().st_mtime_ns
    return files


def add_import_paths(config: WorkerConfig) -> None:
    """Let ``main`` import its sibling modules, wherever it is (``main = "src/entry.py"``),
    and the packages a Python Workers project vendors in ``python_modules/``."""
    for folder in (config.root / "python_modules", config.main.parent):
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def load_error_text(exc: BaseException) -> str:
    """What a request is answered while the Worker does not load."""
    if isinstance(exc, ConfigError):
        return str(exc)
    return "".join(traceback.format_exception(exc))


def load(
    directory: Path | str,
    env: str | None,
    options: RuntimeOptions,
    backend: StorageBackend,
    *,
    require_secrets: bool = False,
) -> WorkerRuntime:
    config = load_config(directory, env, require_secrets=require_secrets)
    logger.info(
        "%s%s", config.path, f" [env.{config.env_name}]" if config.env_name is not None else ""
    )
    add_import_paths(config)
    return WorkerRuntime(config, options, backend)


class Reloader:
    def __init__(
        self,
        server: Server,
        front: Front,
        root: Path,
        env: str | None,
        options: RuntimeOptions,
        backend: StorageBackend,
        *,
        poll: float = POLL_S,
        debounce: float = DEBOUNCE_S,
    ) -> None:
        self.server = server
        self.front = front
        self.root = root
        self.env = env
        self.options = options
        self.backend = backend
        self.poll = poll
        self.debounce = debounce
        self.reloads = 0

    async def run(self) -> None:
        seen = snapshot(self.root)
        while True:
            await asyncio.sleep(self.poll)
            now = snapshot(self.root)
            if now == seen:
                continue
            # Wait for the save to be over: no change for `debounce` seconds.
            while True:
                await asyncio.sleep(self.debounce)
                later = snapshot(self.root)
                if later == now:
                    break
                now = later
            seen = now
            await self.reload()

    async def reload(self) -> None:
        front = self.front
        try:
            runtime = load(self.root, self.env, self.options, self.backend)
        except Exception as exc:
            front.error = load_error_text(exc)
            logger.error(
                "the Worker does not load; every request is answered with this error until "
                "it is fixed (watching for changes):\n%s",
                front.error,
            )
            return
        # Hibernatable WebSockets move to the new version and stay open; the others are
        # tied to the old code's listeners and close with 1012. The old version lets go
        # of its objects (and their storage) before the new one runs.
        old = front.runtime
        kept = runtime.adopt_hibernatable(old) if old is not None else 0
        from stateroom.server.websocket import WebSocketConnection

        events = self.server.events
        assert isinstance(events, LocalEvents)
        for conn in list(self.server.connections):
            if isinstance(conn, WebSocketConnection) and not events.socket_hibernatable(
                conn.handle
            ):
                conn.shutdown(CLOSE_SERVICE_RESTART, "Service Restart")
        # New requests go to the new version from now on; the old one evicts its objects
        # (closing their storage) before anything else runs, then its alarms are re-armed
        # by the new one from storage.
        front.runtime = runtime
        front.error = None
        self.server.options.allowed_origins = runtime.config.allowed_origins
        if old is not None:
            await old.shutdown()
        runtime.start()
        self.reloads += 1
        logger.info("reloaded (%d hibernatable WebSockets kept open)", kept)
