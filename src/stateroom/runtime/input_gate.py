"""The input gate: an object's events, one at a time and in arrival order.

Cloudflare ("Durable Objects: Easy, Fast, Correct -- Choose three"): while a storage
transaction or a ``blockConcurrencyWhile()`` callback runs, no new event is delivered to
the object, so the code that started it observes no interleaving. Events that arrive
meanwhile wait here, in order, and are let through one per loop turn once the gate
opens: each waiting event runs up to its first suspension before the next one may
start (the hand-off), so an event that closes the gate again as soon as it starts
keeps the rest waiting.

This is the only input gate: ``ActorHost`` delivers every event through it,
``ctx.blockConcurrencyWhile()`` and storage transactions close it. It knows nothing of
objects or storage; what a fatal error in a critical section does (reset the object)
is the ``on_fatal`` hook its owner passes in (workerd's ``InputGate::Hooks``).

Compiled with mypyc: every WebSocket message reads ``blocked``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

from stateroom.runtime.gates import BlockConcurrencyTimeoutError

T = TypeVar("T")

BLOCK_TIMEOUT: Final = 30.0
"""Seconds a ``blockConcurrencyWhile()`` callback may run before the object is reset
(Cloudflare's limit; ``RuntimeOptions.block_timeout`` defaults to it)."""


class _Turn:
    """A queued event that awaits its turn (a request, an RPC call), woken by ``drain()``."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def __call__(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class InputGate:
    """Holds an object's new events while a critical section runs; lets them on in order.

    ``close()``/``reopen()`` count, so sections nest. An event either runs at once
    (``blocked`` is false) or waits: a callback with ``enqueue()``, a coroutine with
    ``await wait_turn()``.
    """

    def __init__(self, on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.on_fatal = on_fatal
        # Events waiting for their turn, run in order by drain().
        self.queue: deque[Callable[[], None]] = deque()
        # Critical sections open.
        self.depth = 0
        # A woken event has not yet reached its first suspension.
        self.handoff = False
        # True whenever an arriving event must wait rather than run now.
        self.blocked = False

    def is_open(self) -> bool:
        """Whether an event may be delivered right now (no section open, nobody waiting)."""
        return not self.blocked

    # -- critical sections ---------------------------------------------------------

    def close(self) -> None:
        """Enter a critical section: hold every new event until the matching ``reopen()``."""
        self.depth += 1
        self.blocked = True

    def reopen(self) -> None:
        """Leave a critical section entered with ``close()``."""
        if self.depth <= 0:
            raise RuntimeError("InputGate.reopen() without a matching close()")
        self.depth -= 1
        if self.depth == 0:
            self.drain()

    def closed(self) -> _Section:
        """``async with gate.closed():`` (or ``with``): a critical section."""
        return _Section(self)

    def block_concurrency_while(
        self, fn: Callable[[], Awaitable[T]], timeout: float | None = BLOCK_TIMEOUT
    ) -> Coroutine[Any, Any, T]:
        """``ctx.blockConcurrencyWhile(fn)``: close the gate now, run ``fn()``, reopen.

        The gate closes at once, before the returned coroutine first runs (a constructor
        calls this without awaiting). As Cloudflare documents, a callback that raises or
        runs past ``timeout`` seconds resets the object (``on_fatal``); the exception,
        ``BlockConcurrencyTimeoutError`` for the time limit, propagates.
        """
        self.close()
        return self._run_blocked(fn, timeout)

    async def _run_blocked(self, fn: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        try:
            scope = asyncio.timeout(timeout)
            try:
                async with scope:
                    return await fn()
            except TimeoutError as exc:
                if not scope.expired():  # the callback's own TimeoutError, not our limit
                    self._fatal(exc)
                    raise
                error = BlockConcurrencyTimeoutError(
                    f"blockConcurrencyWhile() callback did not complete within {timeout} s"
                )
                self._fatal(error)
                raise error from exc
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._fatal(exc)
                raise
        finally:
            self.reopen()

    def _fatal(self, exc: BaseException) -> None:
        if self.on_fatal is not None:
            self.on_fatal(exc)

    # -- waiting events ------------------------------------------------------------------

    def enqueue(self, event: Callable[[], None]) -> None:
        """Run ``event()`` when its turn comes, after every event queued before it."""
        self.queue.append(event)
        self.blocked = True

    async def wait_turn(self) -> None:
        """Wait until the events queued before this one have had their turn."""
        loop = asyncio.get_running_loop()
        turn = _Turn(loop.create_future())
        self.queue.append(turn)
        self.blocked = True
        try:
            await turn.future
        except asyncio.CancelledError:
            # The caller went away (a client hung up). If its turn had come, pass the
            # turn on; otherwise leave the queue without it.
            if turn.future.done() and not turn.future.cancelled():
                loop.call_soon(self._resume_after_handoff)
            else:
                turn.future.cancel()
                with contextlib.suppress(ValueError):
                    self.queue.remove(turn)
                self.blocked = bool(self.depth or self.handoff or self.queue)
            raise
        # Let the queue move on once this event has reached its first suspension.
        loop.call_soon(self._resume_after_handoff)

    def _resume_after_handoff(self) -> None:
        self.handoff = False
        self.drain()

    def drain(self) -> None:
        """Let waiting events on, in order, while the gate stays open."""
        queue = self.queue
        while queue and not self.depth and not self.handoff:
            item = queue.popleft()
            if isinstance(item, _Turn):
                if item.future.done():
                    continue  # its caller was cancelled
                # The waiting event resumes on a later loop turn; nothing else may
                # start before it has run up to its first suspension.
                self.handoff = True
            item()
        self.blocked = bool(self.depth or self.handoff or queue)


class _Section:
    """``gate.closed()``: a critical section, as an ``async with`` or ``with`` block."""

    def __init__(self, gate: InputGate) -> None:
        self.gate = gate

    def __enter__(self) -> InputGate:
        self.gate.close()
        return self.gate

    def __exit__(self, *exc: object) -> None:
        self.gate.reopen()

    async def __aenter__(self) -> InputGate:
        self.gate.close()
        return self.gate

    async def __aexit__(self, *exc: object) -> None:
        self.gate.reopen()
