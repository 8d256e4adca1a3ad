"""stateroom: Cloudflare-style Workers and Durable Objects, self-hosted, in Python.

User code imports its API from here::

    from stateroom import WorkerEntrypoint, DurableObject, Request, Response, WebSocketPair
"""

from stateroom.api.entrypoints import DurableObject, ExecutionContext, WorkerEntrypoint
from stateroom.api.headers import Headers
from stateroom.api.namespace import DurableObjectId, DurableObjectNamespace, DurableObjectStub
from stateroom.api.requests import Request
from stateroom.api.responses import Response
from stateroom.api.state import DurableObjectState
from stateroom.api.websockets import (
    CloseEvent,
    ErrorEvent,
    MessageEvent,
    WebSocket,
    WebSocketPair,
    WebSocketRequestResponsePair,
)

__all__ = [
    "CloseEvent",
    "DurableObject",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectState",
    "DurableObjectStub",
    "ErrorEvent",
    "ExecutionContext",
    "Headers",
    "MessageEvent",
    "Request",
    "Response",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
]

__version__ = "0.1.0"
