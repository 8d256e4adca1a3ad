"""What the logs and error pages say about a request: its id and the object it reached.

The server makes a ``RequestTrace`` for each request it dispatches and sets it in
``current_trace``; the runtime notes in it the Durable Object the request reached
(``note_object``) and, on an exception leaving an object's event, tags the exception
with that object (``tag_exception``), so that a 500 and its log line can name it.
The request id is made only when something asks for it (a 500, a log line).

Nothing here runs per WebSocket message: it is part of the request path and of the
error paths only.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from contextvars import ContextVar
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from stateroom.runtime.actor import ActorHost


class ObjectInfo(NamedTuple):
    """A Durable Object as logs name it: class, name (if it was made from one), id."""

    cls: str
    name: str | None
    id: str

    def __str__(self) -> str:
        named = f" {self.name!r}" if self.name is not None else ""
        return f"{self.cls}{named} (id {self.id})"

    def fields(self) -> dict[str, str | None]:
        """As ``extra=`` for a log record (the JSON log format prints them)."""
        return {"object_class": self.cls, "object_name": self.name, "object_id": self.id}


def describe(host: ActorHost) -> ObjectInfo:
    return ObjectInfo(host.namespace.cls.__name__, host.id.name, host.id.hex)


class RequestTrace:
    """One request being answered."""

    __slots__ = ("_request_id", "object")

    def __init__(self) -> None:
        self._request_id: str | None = None
        self.object: ObjectInfo | None = None  # the first Durable Object it reached

    @property
    def known_request_id(self) -> str | None:
        """The request id if something has asked for it already (else None)."""
        return self._request_id

    @property
    def request_id(self) -> str:
        rid = self._request_id
        if rid is None:
            rid = self._request_id = secrets.token_hex(8)
        return rid


current_trace: ContextVar[RequestTrace | None] = ContextVar("stateroom_trace", default=None)

_TAG = "_stateroom_object"


def note_object(host: ActorHost) -> None:
    """The request being answered (if any) reached ``host``'s object."""
    trace = current_trace.get()
    if trace is not None and trace.object is None:
        trace.object = describe(host)


def tag_exception(exc: BaseException, host: ActorHost) -> None:
    """``exc`` left an event of ``host``'s object; the innermost object is kept."""
    if getattr(exc, _TAG, None) is None:
        with contextlib.suppress(AttributeError, TypeError):  # a class with __slots__
            setattr(exc, _TAG, describe(host))


def object_of(exc: BaseException) -> ObjectInfo | None:
    """The object whose event ``exc`` escaped from, if it left one."""
    info = getattr(exc, _TAG, None)
    return info if isinstance(info, ObjectInfo) else None


def log_uncaught(log: logging.Logger, host: ActorHost, what: str) -> None:
    """Log the exception being handled, naming the object whose ``what`` raised it.

    A function of its own, called from the compiled modules' ``except`` branches: their
    functions keep the locals they had, so the path without an exception is unchanged.
    """
    info = describe(host)
    log.error("Uncaught exception in %s of %s", what, info, exc_info=True, extra=info.fields())
