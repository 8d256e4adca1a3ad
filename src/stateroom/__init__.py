"""stateroom: Cloudflare-style Workers and Durable Objects, self-hosted, in Python.

User code imports its API from here::

    from stateroom import WorkerEntrypoint, DurableObject, Request, Response, WebSocketPair

The names are loaded on first use (PEP 562), so that importing a part of the package
(the network server, the storage layer) loads only what that part imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stateroom.api.entrypoints import (
        DurableObject,
        ExecutionContext,
        ScheduledController,
        WorkerEntrypoint,
    )
    from stateroom.api.fetch import fetch
    from stateroom.api.headers import Headers
    from stateroom.api.namespace import DurableObjectId, DurableObjectNamespace, DurableObjectStub
    from stateroom.api.requests import Request
    from stateroom.api.responses import Response
    from stateroom.api.rpc import DataCloneError, RpcTarget
    from stateroom.api.state import DurableObjectState
    from stateroom.api.streams import ReadableStream
    from stateroom.api.websockets import (
        CloseEvent,
        ErrorEvent,
        MessageEvent,
        WebSocket,
        WebSocketPair,
        WebSocketRequestResponsePair,
    )

# Each public name, and the module that defines it.
_EXPORTS = {
    "CloseEvent": "stateroom.api.websockets",
    "DataCloneError": "stateroom.api.rpc",
    "DurableObject": "stateroom.api.entrypoints",
    "DurableObjectId": "stateroom.api.namespace",
    "DurableObjectNamespace": "stateroom.api.namespace",
    "DurableObjectState": "stateroom.api.state",
    "DurableObjectStub": "stateroom.api.namespace",
    "ErrorEvent": "stateroom.api.websockets",
    "ExecutionContext": "stateroom.api.entrypoints",
    "Headers": "stateroom.api.headers",
    "ReadableStream": "stateroom.api.streams",
    "fetch": "stateroom.api.fetch",
    "MessageEvent": "stateroom.api.websockets",
    "Request": "stateroom.api.requests",
    "Response": "stateroom.api.responses",
    "RpcTarget": "stateroom.api.rpc",
    "ScheduledController": "stateroom.api.entrypoints",
    "WebSocket": "stateroom.api.websockets",
    "WebSocketPair": "stateroom.api.websockets",
    "WebSocketRequestResponsePair": "stateroom.api.websockets",
    "WorkerEntrypoint": "stateroom.api.entrypoints",
}

__all__ = [
    "CloseEvent",
    "DataCloneError",
    "DurableObject",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectState",
    "DurableObjectStub",
    "ErrorEvent",
    "ExecutionContext",
    "Headers",
    "MessageEvent",
    "ReadableStream",
    "Request",
    "Response",
    "RpcTarget",
    "ScheduledController",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
    "fetch",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stateroom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
