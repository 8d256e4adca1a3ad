"""Loading a Worker: its module, its ``env`` and its Durable Object namespaces.

A ``WorkerRuntime`` is one loaded version of the application. ``stateroom dev``
makes a new one when the code changes; the server keeps its sockets.

This is where the layers are put together, so it sits above them all: it imports
the API (entry points, namespace bindings, ``ctx``), hands the runtime the hooks
through which it makes API objects (``make_state``, ``make_id``), and gives it a
storage backend. Nothing below imports it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import logging
import sys
import time
import urllib.parse
from collections.abc import Callable
from itertools import count
from pathlib import Path
from types import ModuleType
from typing import Any

from stateroom.api.entrypoints import (
    DurableObject,
    ExecutionContext,
    ScheduledController,
    WorkerEntrypoint,
)
from stateroom.api.namespace import DurableObjectId, DurableObjectNamespace
from stateroom.api.requests import Request
from stateroom.api.responses import Response
from stateroom.api.state import DurableObjectState
from stateroom.api.websockets import SOCKET_HOOKS
from stateroom.config import ConfigError, WorkerConfig
from stateroom.runtime.actor import ActorNamespace
from stateroom.runtime.cron import CronError, CronScheduler, parse_cron
from stateroom.runtime.options import RuntimeOptions
from stateroom.storage.backend import StorageBackend

logger = logging.getLogger("stateroom.runtime")

_generation = count(1)


class Env:
    """``env``: bindings and vars as attributes (``env.MY_DO``) and items (``env["MY_DO"]``)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getitem__(self, name: str) -> Any:
        return self.__dict__[name]

    def __contains__(self, name: object) -> bool:
        return name in self.__dict__

    def __repr__(self) -> str:
        return f"Env({sorted(self.__dict__)})"


def load_module(config: WorkerConfig) -> ModuleType:
    """Import ``main`` under a fresh name, so a reload really runs the new code."""
    root = str(config.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    # Helper modules of the app are imported afresh too, or a reload would miss their edits.
    installed = (Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "stateroom" or name.startswith("stateroom."):
            continue
        file = Path(path).resolve()
        if file.is_relative_to(config.root) and not any(file.is_relative_to(p) for p in installed):
            del sys.modules[name]
    name = f"stateroom_app_{next(_generation)}_{config.main.stem}"
    spec = importlib.util.spec_from_file_location(name, config.main)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{config.path}: `main`: cannot import {config.main}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class WorkerRuntime:
    """One loaded version of a Worker and its Durable Object classes."""

    def __init__(
        self,
        config: WorkerConfig,
        options: RuntimeOptions | None,
        backend: StorageBackend,
    ) -> None:
        self.config = config
        self.options = options or RuntimeOptions()
        self.backend = backend
        _apply_migrations(config, self.backend)
        kinds = config.class_storage()
        origins = config.class_origins()
        self.module = load_module(config)
        self.namespaces: dict[str, ActorNamespace] = {}
        values: dict[str, Any] = dict(config.vars)
        env = Env(values)
        for binding in config.durable_objects:
            cls = getattr(self.module, binding.class_name, None)
            if not (isinstance(cls, type) and issubclass(cls, DurableObject)):
                raise ConfigError(
                    f"{config.path}: `durable_objects.bindings` {binding.name}: "
                    f"{config.main.name} must define class {binding.class_name}(DurableObject)"
                )
            secret = namespace_secret(config, binding.class_name, origins)
            ns = ActorNamespace(
                binding.name,
                cls,
                env,
                secret,
                self.options,
                self.backend,
                storage_name=binding.class_name,
                sql_enabled=kinds.get(binding.class_name) == "sqlite",
                make_state=DurableObjectState,
                make_id=DurableObjectId,
                socket_hooks=SOCKET_HOOKS,
            )
            self.namespaces[binding.name] = ns
            values[binding.name] = DurableObjectNamespace(ns)
        env.__dict__.update(values)
        self.env = env
        entry = getattr(self.module, "Default", None)
        if not (isinstance(entry, type) and issubclass(entry, WorkerEntrypoint)):
            raise ConfigError(
                f"{config.main}: no Worker entrypoint; define "
                "`class Default(WorkerEntrypoint)` with `async def fetch(self, request)`"
            )
        self.ctx = ExecutionContext()
        self.entrypoint = entry(self.ctx, env)
        # The clock cron triggers read (UTC epoch seconds); tests give a virtual one.
        self.wall_clock: Callable[[], float] = time.time
        self.cron_catch_up = False  # run every occurrence a jump of the clock passed
        self.crons: CronScheduler | None = None
        if config.crons and getattr(self.entrypoint, "scheduled", None) is None:
            logger.warning(
                "%s: `triggers.crons` is set but Default defines no scheduled() handler",
                config.path,
            )

    def start(self) -> None:
        """Re-arm alarms persisted by earlier runs (some may be due at once), and the
        cron triggers."""
        for ns in self.namespaces.values():
            ns.alarms.recover()
        if self.config.crons:
            self.crons = CronScheduler(
                self.config.crons,
                self.scheduled,
                wall_clock=self.wall_clock,
                catch_up=self.cron_catch_up,
            )
            self.crons.start()

    async def scheduled(self, cron: str, scheduled_time_ms: float) -> None:
        """Run ``Default.scheduled(controller)`` (or ``(controller, env, ctx)``, the
        JavaScript and Python SDK form) for one trigger."""
        handler = getattr(self.entrypoint, "scheduled", None)
        if handler is None:
            logger.warning("cron %r fired, but Default defines no scheduled() handler", cron)
            return
        controller = ScheduledController(cron, scheduled_time_ms)
        arity = len(inspect.signature(handler).parameters)
        # The entrypoint's own env and ctx (the workers adapter wraps them, as the SDK does).
        env = getattr(self.entrypoint, "env", self.env)
        ctx = getattr(self.entrypoint, "ctx", self.ctx)
        result = handler(*(controller, env, ctx)[: max(1, arity)])
        if inspect.isawaitable(result):
            await result

    async def fetch(self, request: Request) -> Response:
        if self.options.test_scheduled:
            answer = await self._test_scheduled(request)
            if answer is not None:
                return answer
        response = await self.entrypoint.fetch(request)
        if not isinstance(response, Response):
            raise TypeError(
                f"Default.fetch() returned {type(response).__name__}; it must return a Response."
            )
        return response

    def adopt_hibernatable(self, old: WorkerRuntime) -> int:
        """Take over the hibernatable WebSockets of the version being replaced.

        Their state lives on the socket (tags, attachment) and in storage, not in
        the old code, so they stay open across a reload: their next event wakes the
        object with the new code. Returns how many sockets moved.
        """
        moved = 0
        for binding, old_ns in old.namespaces.items():
            new_ns = self.namespaces.get(binding)
            if new_ns is None:
                continue
            for old_host in list(old_ns.hosts.values()):
                if old_host.hibernation.sockets:
                    new_host = new_ns.host(old_host.id)
                    moved += new_host.hibernation.adopt(old_host.hibernation)
        return moved

    async def _test_scheduled(self, request: Request) -> Response | None:
        """``/__scheduled?cron=...&time=...`` (wrangler's dev route, also at
        ``/cdn-cgi/handler/scheduled``): run ``scheduled()`` now and say so."""
        rest = request.url.split("://", 1)[-1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        path, _, query = target.partition("?")
        if path not in ("/__scheduled", "/cdn-cgi/handler/scheduled"):
            return None
        params = urllib.parse.parse_qs(query)
        cron = params.get("cron", [""])[0]
        if cron:
            try:
                parse_cron(cron)
            except CronError as exc:
                return Response(str(exc), status=400)
        when = params.get("time", [""])[0]
        try:
            when_ms = float(when) if when else self.wall_clock() * 1000
        except ValueError:
            return Response(f"time={when!r} is not a number of milliseconds", status=400)
        await self.scheduled(cron, when_ms)
        return Response("Ran scheduled event")

    async def shutdown(self, drain_timeout: float = 10.0) -> None:
        if self.crons is not None:
            self.crons.cancel_all()
        # Objects go first, so their storage is free for a version taking over at once.
        for ns in self.namespaces.values():
            await ns.shutdown()
        try:
            await asyncio.wait_for(self.ctx.drain(), drain_timeout)
        except TimeoutError:
            logger.warning("waitUntil() work still running after %.0fs; abandoned", drain_timeout)


def namespace_secret(
    config: WorkerConfig, class_name: str, origins: dict[str, str] | None = None
) -> bytes:
    """The key of a class's object ids: from the name the class was created under, so
    that renaming it (``renamed_classes``) keeps its objects' ids, and with them their data."""
    origin = (config.class_origins() if origins is None else origins).get(class_name, class_name)
    return hashlib.sha256(f"stateroom-namespace:{config.name}:{origin}".encode()).digest()


def _apply_migrations(config: WorkerConfig, backend: StorageBackend) -> None:
    """Storage side of ``[[migrations]]``: ``renamed_classes`` give the old class's stored
    objects to the new one; ``deleted_classes`` delete the class's objects and their data,
    as on Cloudflare."""
    for migration in config.migrations:
        for old, new in migration.renamed_classes:
            if backend.rename_namespace(old, new):
                logger.info("storage of %s now belongs to %s (renamed_classes)", old, new)
        for name in migration.deleted_classes:
            deleted = backend.delete_namespace(name)
            if deleted:
                logger.warning(
                    "deleted %d stored objects of %s (deleted_classes in migration %s)",
                    deleted,
                    name,
                    migration.tag,
                )
