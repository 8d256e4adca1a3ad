"""Streaming bodies: ``request.body`` and a ``Response`` built from an async iterable.

A ``ReadableStream`` is read once, chunk by chunk (``async for chunk in stream``,
``await stream.read()``, or ``getReader().read()`` as in JavaScript). It has two
sources:

* the network: the HTTP server feeds a request's body as it arrives (``_feed``,
  ``_end``) and is told when the reader has drained what it holds (``on_drain``), so
  it can pause reading the socket while the app is behind (backpressure: at most
  about ``high_water`` bytes are held, whatever the body's size);
* an async iterable (an ``async def`` generator, another stream): pulled one chunk
  per read. ``str`` chunks are sent as UTF-8.

``await request.bytes()`` / ``text()`` / ``json()`` read the whole body into memory,
as asked.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

# Bytes a network-fed stream holds before the server stops reading the socket.
HIGH_WATER = 64 * 1024


class RequestBodyError(Exception):
    """The request body could not be read to its end: the client sent a malformed or
    oversized body, or stopped sending. The server answers ``status`` if the app lets
    this escape."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BodyTooLargeError(RequestBodyError):
    """The request body grew past the server's limit while the app read it (413)."""

    status = 413


class ReadableStream:
    """A body read once: ``async for chunk in stream`` (bytes), or ``await stream.read()``."""

    __slots__ = (
        "_chunks",
        "_closed",
        "_done",
        "_error",
        "_held",
        "_on_drain",
        "_on_first_read",
        "_source",
        "_used",
        "_waiter",
        "high_water",
    )

    def __init__(self, source: AsyncIterable[Any] | None = None) -> None:
        self._source: AsyncIterator[Any] | None = None
        if source is not None:
            if not hasattr(source, "__aiter__"):
                raise TypeError(
                    f"A stream's source must be an async iterable of bytes or str, "
                    f"not {type(source).__name__}."
                )
            self._source = source.__aiter__()
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_drain: Callable[[], None] | None = None
        self._on_first_read: Callable[[], None] | None = None  # the server's 100 Continue
        self._used = False
        self._closed = False
        self.high_water = HIGH_WATER

    # -- fed by the server -------------------------------------------------------------

    @classmethod
    def _fed(cls, on_drain: Callable[[], None] | None) -> ReadableStream:
        stream = cls()
        stream._on_drain = on_drain
        return stream

    def _feed(self, chunk: bytes) -> bool:
        """Add a chunk from the network; True while the reader keeps up (below high water)."""
        if self._closed:
            return True  # nobody will read it: dropped, the socket keeps being read
        self._chunks.append(chunk)
        self._held += len(chunk)
        self._wake()
        return self._held < self.high_water

    def _end(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self._done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    @property
    def _full(self) -> bool:
        return not self._closed and self._held >= self.high_water

    @property
    def _finished(self) -> bool:
        """Has the whole body arrived (or will none of it be read)?"""
        return self._done or self._closed

    # -- the reader -----------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return self._used

    async def read(self) -> bytes:
        """The next chunk; ``b""`` once the body has ended."""
        self._used = True
        source = self._source
        if source is not None:
            if self._closed:
                return b""
            try:
                chunk = await source.__anext__()
            except StopAsyncIteration:
                self._closed = True
                return b""
            return _chunk_bytes(chunk)
        first = self._on_first_read
        if first is not None:
            self._on_first_read = None
            if not self._done:
                first()
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done or self._closed:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        chunk = self._chunks.popleft()
        was_full = self._held >= self.high_water
        self._held -= len(chunk)
        if was_full and self._held < self.high_water and self._on_drain is not None:
            self._on_drain()
        return chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while True:
            chunk = await self.read()
            if chunk:
                return chunk
            if self._finished:
                raise StopAsyncIteration

    async def readall(self) -> bytes:
        """Every remaining chunk, joined (what ``bytes()`` on a body does)."""
        parts = [chunk async for chunk in self]
        return b"".join(parts)

    def getReader(self) -> _Reader:
        self._used = True
        return _Reader(self)

    get_reader = getReader

    async def cancel(self, reason: Any = None) -> None:
        """Stop reading: the rest is dropped; an async-generator source is closed."""
        await self.aclose()

    async def aclose(self) -> None:
        self._discard()
        source = self._source
        if source is not None:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                result = closer()
                if inspect.isawaitable(result):
                    await result

    def _discard(self) -> None:
        """Drop what is held and anything that arrives later (the app answered without it)."""
        was_full = self._full
        self._closed = True
        self._chunks.clear()
        self._held = 0
        self._wake()
        if was_full and self._on_drain is not None:
            self._on_drain()

    def __repr__(self) -> str:
        return "<ReadableStream>"


class _Reader:
    """``stream.getReader()``: ``await reader.read()`` gives ``{"done": ..., "value": ...}``."""

    __slots__ = ("_stream",)

    def __init__(self, stream: ReadableStream) -> None:
        self._stream = stream

    async def read(self) -> dict[str, Any]:
        while True:
            chunk = await self._stream.read()
            if chunk:
                return {"done": False, "value": chunk}
            if self._stream._finished:
                return {"done": True, "value": None}

    async def cancel(self, reason: Any = None) -> None:
        await self._stream.cancel(reason)

    def releaseLock(self) -> None:
        pass

    release_lock = releaseLock


def _chunk_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"A streamed body chunk must be bytes or str, not {type(chunk).__name__}.")


def as_stream(body: Any) -> ReadableStream | None:
    """``body`` as a stream, if it is one (a stream, or an async iterable); else None."""
    if isinstance(body, ReadableStream):
        return body
    if hasattr(body, "__aiter__"):
        return ReadableStream(body)
    return None
