"""``workers``: Cloudflare's Python Workers SDK, for Workers that stateroom runs.

Cloudflare's Python Workers begin with ``from workers import DurableObject, Response,
WorkerEntrypoint``. This package gives those names the same signatures and behaviour on
top of stateroom's own API (the classes here are subclasses of stateroom's), so such a
Worker runs under ``stateroom serve`` unchanged:

* ``WorkerEntrypoint``, ``DurableObject`` (ctx with ``abort()``), ``handler``;
* ``Request``, ``Response`` (``Response(body, status, status_text, headers, web_socket)``,
  ``Response.json``/``from_json``/``redirect``), ``FetchResponse``;
* ``fetch(url, method=..., headers=..., body=...)``: outbound HTTP;
* ``env``: the running Worker's env (``from workers import env``), usable from anywhere
  once the Worker has been constructed; ``wait_until``/``waitUntil``;
* ``import_from_javascript("cloudflare:workers")``, ``patch_env``, ``python_to_rpc`` and
  ``python_from_rpc`` (values cross stateroom's RPC as Python objects already).

Not provided: ``Blob``, ``FormData``, ``WorkflowEntrypoint`` and the JavaScript-only
bindings (KV, D1, R2, Queues, Workflows), which stateroom does not implement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from stateroom import Headers
from stateroom.api.state import DurableObjectAbort
from workers.entrypoints import (
    DurableObject,
    DurableObjectContext,
    WorkerEntrypoint,
    _Current,
    handler,
)
from workers.fetch import fetch
from workers.request import Request
from workers.response import FetchResponse, Response
from workers.rpc import _EnvWrapper, python_from_rpc, python_to_rpc

Body = str | bytes | None
JSBody = bytes | memoryview
Context = Any

__all__ = [
    "Body",
    "Context",
    "DurableObject",
    "DurableObjectAbort",
    "DurableObjectContext",
    "FetchResponse",
    "Headers",
    "JSBody",
    "Request",
    "Response",
    "WorkerEntrypoint",
    "env",
    "fetch",
    "handler",
    "import_from_javascript",
    "patch_env",
    "python_from_rpc",
    "python_to_rpc",
    "waitUntil",
    "wait_until",
]


class _RunningEnv:
    """``workers.env``: the running Worker's env, looked up at each use.

    It can be imported at the top of a module, before the Worker exists; using it before
    stateroom has constructed the Worker raises ``RuntimeError``.
    """

    __slots__ = ()

    @staticmethod
    def _target() -> _EnvWrapper:
        current = _Current.env
        if current is None:
            raise RuntimeError(
                "workers.env is used before the Worker was constructed; use it inside "
                "a handler (fetch, a Durable Object method), or self.env"
            )
        return current

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target(), name, value)

    def __getitem__(self, name: str) -> Any:
        return self._target()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._target()

    def __repr__(self) -> str:
        return f"workers.env({_Current.env!r})"


env: Any = _RunningEnv()


def wait_until(awaitable: Awaitable[Any]) -> None:
    """Keep ``awaitable`` running after the response is sent (the Worker's ctx.waitUntil)."""
    ctx = _Current.ctx
    if ctx is None:
        raise RuntimeError("workers.wait_until() is used before the Worker was constructed")
    ctx.waitUntil(awaitable)


waitUntil = wait_until


def import_from_javascript(module_name: str) -> Any:
    """``cloudflare:workers`` (``env``, ``waitUntil``, the entrypoint classes); stateroom
    has no JavaScript modules, so any other name raises ``ImportError``."""
    if module_name == "cloudflare:workers":
        return SimpleNamespace(
            env=env,
            waitUntil=wait_until,
            DurableObject=DurableObject,
            WorkerEntrypoint=WorkerEntrypoint,
        )
    raise ImportError(
        f"Failed to import {module_name!r}: stateroom runs Python only; "
        "of the JavaScript modules only 'cloudflare:workers' is available"
    )


@contextlib.contextmanager
def patch_env(
    d: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None, **kwds: Any
) -> Iterator[None]:
    """Within the block, ``env`` has these names set to these values; restored after."""
    values = {**dict(d or {}), **kwds}
    target = _RunningEnv._target()
    missing = object()
    saved = {name: getattr(target, name, missing) for name in values}
    for name, value in values.items():
        setattr(target, name, value)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is missing:
                delattr(target, name)
            else:
                setattr(target, name, old)
