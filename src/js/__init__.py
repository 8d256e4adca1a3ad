"""``js`` for Python Workers run by stateroom: the JavaScript globals Workers import.

Under Cloudflare (Pyodide), ``from js import WebSocketPair, Response`` reaches into the
JavaScript global scope. stateroom has no JavaScript engine: each name here is a thin
adapter over stateroom's own objects, spelled the way Pyodide code calls JavaScript
(``Class.new(...)`` constructs; options come as a dict, a ``to_js`` object or keyword
arguments). What each one returns:

========================  =============================================================
``WebSocketPair.new()``   a ``stateroom.WebSocketPair`` (``client, server = pair``,
                          ``pair.object_values()``, ``Object.values(pair)``)
``WebSocketRequest``      ``WebSocketRequestResponsePair.new(request, response)``:
``ResponsePair``          a ``stateroom.WebSocketRequestResponsePair``
``Response.new(...)``     a ``stateroom.Response``; ``Response.json(data, init)``,
                          ``Response.redirect(url, status)``
``Request.new(...)``      a ``stateroom.Request``
``Headers.new(init)``     a ``stateroom.Headers``
``URL.new(url, base)``    a parsed URL (``pathname``, ``searchParams``, ...)
``Date``                  ``Date.now()`` in ms; ``Date.new()`` with ``getTime()``,
                          ``toISOString()``
``Object`` / ``Array``    ``Object.fromEntries``/``values``/``keys``/``entries``/``new``;
                          ``Array.new(...)``
``JSON``                  ``JSON.stringify`` / ``JSON.parse`` (the ``json`` module)
``console``               ``console.log`` & co. write to the ``stateroom.console`` logger
``fetch``                 outbound HTTP, as ``workers.fetch``
``WebSocket.new(url)``    an outgoing WebSocket (``open``/``message``/``close``/``error``
                          listeners, ``send``, ``close``): see ``js._websocket``
``setTimeout`` & co.      the running asyncio loop's timers
========================  =============================================================

Any other name is missing (``ImportError`` from ``from js import ...``, ``AttributeError``
from ``js.NAME``), rather than
pretending: there is no JavaScript behind these names.
"""

from __future__ import annotations

import asyncio
import itertools
import json as _json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import stateroom
from js._websocket import WebSocket
from pyodide.ffi import JsArray, JsException, JsObject, JsProxy, jsnull

__all__ = [
    "JSON",
    "URL",
    "Array",
    "Date",
    "Error",
    "Headers",
    "Object",
    "Request",
    "Response",
    "URLSearchParams",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "clearTimeout",
    "console",
    "fetch",
    "null",
    "queueMicrotask",
    "setTimeout",
    "undefined",
]

undefined = None
null = jsnull


def _options(init: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A JavaScript options bag: a dict, a ``to_js`` object, keyword arguments, or None."""
    merged: dict[str, Any] = {}
    if init is not None and init is not jsnull:
        if isinstance(init, Mapping):
            merged.update(init)
        else:  # an object with attributes (a namespace, a Response used as init, ...)
            for key in ("status", "statusText", "headers", "webSocket", "method", "body"):
                value = getattr(init, key, None)
                if value is not None:
                    merged[key] = value
    merged.update(kwargs)
    return merged


class WebSocketPair:
    """``WebSocketPair.new()``: two connected ends, ``client, server = pair``.

    What it makes is a ``stateroom.WebSocketPair`` (a compiled class, so not subclassed).
    """

    def __new__(cls) -> stateroom.WebSocketPair:  # type: ignore[misc]
        return stateroom.WebSocketPair()

    @staticmethod
    def new() -> stateroom.WebSocketPair:
        return stateroom.WebSocketPair()


class WebSocketRequestResponsePair:
    """``WebSocketRequestResponsePair.new("ping", "pong")``: an auto-response for
    ``ctx.setWebSocketAutoResponse``; makes a ``stateroom.WebSocketRequestResponsePair``."""

    def __new__(cls, request: str, response: str) -> stateroom.WebSocketRequestResponsePair:  # type: ignore[misc]
        return stateroom.WebSocketRequestResponsePair(request, response)

    @staticmethod
    def new(request: str, response: str) -> stateroom.WebSocketRequestResponsePair:
        return stateroom.WebSocketRequestResponsePair(request, response)


class Headers(stateroom.Headers):
    __slots__ = ()

    @classmethod
    def new(cls, init: Any = None) -> Headers:
        if isinstance(init, Mapping) or init is None or isinstance(init, stateroom.Headers):
            return cls(init)
        return cls([(str(k), str(v)) for k, v in init])


class _ResponseJson:
    """``Response.json(data, init)`` on the class; ``await response.json()`` on a response."""

    def __get__(self, obj: Response | None, cls: type[Response]) -> Any:
        if obj is None:
            return cls._json_factory
        return obj._read_json


class Response(stateroom.Response):
    """The Fetch API's ``Response``: ``Response.new(body, {status, statusText, headers,
    webSocket})``. Instances are ``stateroom.Response`` objects."""

    __slots__ = ()

    @classmethod
    def new(cls, body: Any = None, init: Any = None, **kwargs: Any) -> Response:
        if isinstance(body, stateroom.Response) and init is None and not kwargs:
            return cls(
                body.body,
                body.status,
                body.headers,
                statusText=body.statusText,
                webSocket=body.webSocket,
            )
        opts = _options(init, kwargs)
        return cls(
            body,
            int(opts.get("status", 200)),
            _headers(opts.get("headers")),
            statusText=opts.get("statusText"),
            webSocket=opts.get("webSocket"),
        )

    json = _ResponseJson()

    @classmethod
    def _json_factory(cls, data: Any, init: Any = None, **kwargs: Any) -> Response:
        opts = _options(init, kwargs)
        headers = stateroom.Headers(_headers(opts.get("headers")))
        if not headers.has("content-type"):
            headers.set("Content-Type", "application/json")
        return cls(
            JSON.stringify(data),
            int(opts.get("status", 200)),
            headers,
            statusText=opts.get("statusText"),
        )

    @classmethod
    def error(cls) -> Response:
        raise JsException("TypeError", "Response.error() has no meaning in a Worker")


class Request(stateroom.Request):
    """``Request.new(url_or_request, {method, headers, body})``."""

    __slots__ = ()

    @classmethod
    def new(cls, input: Any, init: Any = None, **kwargs: Any) -> Request:
        opts = _options(init, kwargs)
        body = opts.get("body")
        return cls(
            input,
            method=str(opts["method"]) if opts.get("method") else None,
            headers=_headers(opts.get("headers")),
            body=body,
        )


def _headers(value: Any) -> Any:
    if value is None or isinstance(value, Mapping | stateroom.Headers):
        return value
    return [(str(k), str(v)) for k, v in value]


class URLSearchParams(JsProxy):
    __slots__ = ("_pairs",)

    def __init__(self, init: Any = "") -> None:
        if isinstance(init, str):
            self._pairs = parse_qsl(init.removeprefix("?"), keep_blank_values=True)
        elif isinstance(init, Mapping):
            self._pairs = [(str(k), str(v)) for k, v in init.items()]
        else:
            self._pairs = [(str(k), str(v)) for k, v in init]

    @classmethod
    def new(cls, init: Any = "") -> URLSearchParams:
        return cls(init)

    def get(self, name: str) -> str | None:
        return next((v for k, v in self._pairs if k == name), None)

    def getAll(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self._pairs)

    def set(self, name: str, value: str) -> None:
        self._pairs = [(k, v) for k, v in self._pairs if k != name] + [(name, str(value))]

    def append(self, name: str, value: str) -> None:
        self._pairs.append((name, str(value)))

    def delete(self, name: str) -> None:
        self._pairs = [(k, v) for k, v in self._pairs if k != name]

    def entries(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def toString(self) -> str:
        return urlencode(self._pairs)

    __str__ = toString


class URL(JsProxy):
    """``URL.new(url, base=None)``: the WHATWG URL's parts, read-only."""

    __slots__ = (
        "hash",
        "host",
        "hostname",
        "href",
        "origin",
        "password",
        "pathname",
        "port",
        "protocol",
        "search",
        "searchParams",
        "username",
    )

    def __init__(self, url: str, base: str | None = None) -> None:
        href = urljoin(str(base), str(url)) if base is not None else str(url)
        parts = urlsplit(href)
        if not parts.scheme:
            raise JsException("TypeError", f"Invalid URL: {url}")
        self.href = href
        self.protocol = parts.scheme + ":"
        self.username = parts.username or ""
        self.password = parts.password or ""
        self.hostname = parts.hostname or ""
        self.port = str(parts.port) if parts.port is not None else ""
        self.host = self.hostname + (f":{self.port}" if self.port else "")
        self.origin = f"{parts.scheme}://{self.host}" if self.host else "null"
        self.pathname = parts.path or ("/" if self.host else "")
        self.search = f"?{parts.query}" if parts.query else ""
        self.hash = f"#{parts.fragment}" if parts.fragment else ""
        self.searchParams = URLSearchParams(parts.query)

    @classmethod
    def new(cls, url: str, base: str | None = None) -> URL:
        return cls(url, base)

    def toString(self) -> str:
        return self.href

    __str__ = toString


class Date(JsProxy):
    """``Date.now()`` (ms since the epoch, an int); ``Date.new(ms=now)``."""

    __slots__ = ("_ms",)

    def __init__(self, ms: float | None = None) -> None:
        self._ms = float(Date.now() if ms is None else ms)

    @staticmethod
    def now() -> int:
        return time.time_ns() // 1_000_000

    @classmethod
    def new(cls, value: Any = None) -> Date:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return cls(parsed.timestamp() * 1000)
        if isinstance(value, datetime):
            return cls(value.timestamp() * 1000)
        if isinstance(value, Date):
            return cls(value._ms)
        return cls(value)

    def getTime(self) -> float:
        return self._ms

    valueOf = getTime

    def to_py(self, *, depth: int = -1, default_converter: Any = None) -> datetime:
        return datetime.fromtimestamp(self._ms / 1000, tz=UTC)

    def toISOString(self) -> str:
        moment = self.to_py()
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    toJSON = toISOString

    def __repr__(self) -> str:
        return f"Date({self.toISOString()})"


class Object:
    """The ``Object`` constructor's static helpers."""

    @staticmethod
    def new() -> JsObject:
        return JsObject()

    @staticmethod
    def fromEntries(entries: Iterable[Any]) -> JsObject:
        if isinstance(entries, Mapping):
            return JsObject(entries)
        return JsObject((str(k), v) for k, v in entries)

    @staticmethod
    def values(obj: Any) -> list[Any]:
        if isinstance(obj, Mapping):
            return list(obj.values())
        if isinstance(obj, stateroom.WebSocketPair):
            return list(obj.object_values())
        if isinstance(obj, Iterable):
            return list(obj)
        raise JsException("TypeError", f"Object.values() cannot read a {type(obj).__name__}")

    @staticmethod
    def keys(obj: Any) -> list[str]:
        if isinstance(obj, Mapping):
            return [str(k) for k in obj]
        if isinstance(obj, list | tuple | stateroom.WebSocketPair):
            return [str(i) for i in range(len(obj))]
        return []

    @staticmethod
    def entries(obj: Any) -> list[list[Any]]:
        return [[k, v] for k, v in zip(Object.keys(obj), Object.values(obj), strict=True)]

    @staticmethod
    def assign(target: Any, *sources: Mapping[str, Any]) -> Any:
        for source in sources:
            target.update(source)
        return target


class Array:
    @staticmethod
    def new(*items: Any) -> JsArray:
        return JsArray(items)

    @staticmethod
    def isArray(value: Any) -> bool:
        return isinstance(value, list)

    @staticmethod
    def of(*items: Any) -> JsArray:
        return JsArray(items)


def _json_default(value: Any) -> Any:
    if isinstance(value, Date):
        return value.toISOString()
    if isinstance(value, datetime):
        return Date.new(value).toISOString()
    if value is jsnull:
        return None
    raise JsException("TypeError", f"Do not know how to serialize a {type(value).__name__}")


class JSON:
    @staticmethod
    def stringify(value: Any, replacer: Any = None, space: int | str | None = None) -> str:
        if isinstance(value, float) and not math.isfinite(value):
            return "null"
        if space:
            return _json.dumps(value, indent=space, default=_json_default, ensure_ascii=False)
        return _json.dumps(value, separators=(",", ":"), default=_json_default, ensure_ascii=False)

    @staticmethod
    def parse(text: str | bytes) -> Any:
        try:
            return _json.loads(text, object_pairs_hook=JsObject)
        except ValueError as exc:
            raise JsException("SyntaxError", str(exc)) from None


class _Console:
    """``console.log(...)``: one log record per call, arguments joined by spaces."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("stateroom.console")

    def _emit(self, level: int, args: tuple[Any, ...]) -> None:
        self._logger.log(level, "%s", " ".join(_show(a) for a in args))

    def log(self, *args: Any) -> None:
        self._emit(logging.INFO, args)

    info = log

    def debug(self, *args: Any) -> None:
        self._emit(logging.DEBUG, args)

    def warn(self, *args: Any) -> None:
        self._emit(logging.WARNING, args)

    def error(self, *args: Any) -> None:
        self._emit(logging.ERROR, args)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, JsObject | dict | list):
        try:
            return JSON.stringify(value)
        except JsException:
            pass
    return str(value)


console = _Console()


class Error(JsException):
    """``Error.new(message)``: a Python exception carrying a JavaScript error's name."""

    def __init__(self, message: str = "") -> None:
        super().__init__("Error", message)

    @classmethod
    def new(cls, message: str = "") -> Error:
        return cls(message)


async def fetch(resource: Any, init: Any = None, **kwargs: Any) -> Response:
    """Outbound HTTP from the Worker (the same client as ``workers.fetch``)."""
    from workers.fetch import _send

    opts = _options(init, kwargs)
    fetched = await _send(resource, opts)
    return Response.new(fetched)


_timer_ids = itertools.count(1)
_timers: dict[int, asyncio.TimerHandle] = {}
_timer_tasks: set[asyncio.Task[Any]] = set()


def setTimeout(callback: Callable[..., Any], delay_ms: float = 0, *args: Any) -> int:
    """Call ``callback(*args)`` on the running loop after ``delay_ms`` milliseconds."""
    loop = asyncio.get_running_loop()
    timer_id = next(_timer_ids)

    def fire() -> None:
        _timers.pop(timer_id, None)
        result = callback(*args)
        if asyncio.iscoroutine(result):
            task = loop.create_task(result)
            _timer_tasks.add(task)
            task.add_done_callback(_timer_tasks.discard)

    _timers[timer_id] = loop.call_later(max(0.0, delay_ms) / 1000, fire)
    return timer_id


def clearTimeout(timer_id: int | None) -> None:
    handle = _timers.pop(timer_id, None) if timer_id is not None else None
    if handle is not None:
        handle.cancel()


def queueMicrotask(callback: Callable[[], Any]) -> None:
    asyncio.get_running_loop().call_soon(callback)
