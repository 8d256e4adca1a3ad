"""Input and output gates: Durable Objects' concurrency model, in plain asyncio.

Cloudflare ("Durable Objects: Easy, Fast, Correct -- Choose three"):

* **Input gate.** While a storage operation is in progress (or a
  ``blockConcurrencyWhile()`` callback runs), no new event is delivered to
  the object, so the code that started it observes no interleaving. The
  runtime checks ``is_open()`` (or awaits ``wait_open()``) before it
  delivers the next queued event, and critical sections run inside
  ``async with gate.closed():`` (nestable, counted).
* **Output gate.** Outputs (a response, a WebSocket message) produced while a
  write is not yet durable are held, and leave in order once it is. If the
  write fails, they never leave: they are discarded and the object is
  reset, so nobody outside can have seen a state that was lost.

Neither gate does I/O or knows about storage: the storage layer calls
``begin_write()``/``write_done()``/``write_failed()`` (it sees the output
gate only as a ``WriteTracker``), and the runtime calls the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

__all__ = [
    "DEFAULT_BLOCK_TIMEOUT",
    "BlockConcurrencyTimeoutError",
    "GateBrokenError",
    "InputGate",
    "InputGateBrokenError",
    "ObjectResetError",
    "OutputGate",
    "OutputGateBrokenError",
    "block_concurrency_while",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BLOCK_TIMEOUT = 30.0
"""Seconds a ``blockConcurrencyWhile()`` callback may run before the object is reset."""


class ObjectResetError(Exception):
    """The object instance is unusable and the runtime must reset it."""


class BlockConcurrencyTimeoutError(ObjectResetError, TimeoutError):
    """A ``blockConcurrencyWhile()`` callback exceeded its time limit."""


class GateBrokenError(ObjectResetError):
    """A gate was broken by a fatal error; ``__cause__`` is that error."""


class InputGateBrokenError(GateBrokenError):
    """Events can no longer be delivered: the object is being reset."""


class OutputGateBrokenError(GateBrokenError):
    """A write failed, so held outputs were discarded and new ones are refused."""


class _Closed:
    """``gate.closed()``: closes the gate for the ``with``/``async with`` block."""

    __slots__ = ("_gate",)

    def __init__(self, gate: InputGate) -> None:
        self._gate = gate

    def __enter__(self) -> InputGate:
        self._gate.close()
        return self._gate

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._gate.reopen()

    async def __aenter__(self) -> InputGate:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class InputGate:
    """Holds back new events while the object is in a critical section.

    ``close()``/``reopen()`` (or ``closed()``) count, so sections nest.
    Waiters pass in arrival order, one per loop iteration: the next one is
    woken only after the previous one resumed, so an event that closes the
    gate again as soon as it starts keeps the rest waiting, as on Cloudflare.

    ``on_open`` (optional) is called each time the count drops back to zero,
    for runtimes that keep their own event queue instead of awaiting
    ``wait_open()``.
    """

    __slots__ = ("_broken", "_depth", "_on_open", "_queue")

    def __init__(self, *, on_open: Callable[[], None] | None = None) -> None:
        self._depth = 0
        self._queue: deque[asyncio.Future[None]] = deque()
        self._broken: BaseException | None = None
        self._on_open = on_open

    def is_open(self) -> bool:
        """Whether an event may be delivered right now (no section open, nobody queued)."""
        return self._depth == 0 and not self._queue and self._broken is None

    @property
    def depth(self) -> int:
        """How many critical sections are open."""
        return self._depth

    @property
    def broken(self) -> BaseException | None:
        return self._broken

    def close(self) -> None:
        """Enter a critical section (prefer ``closed()``)."""
        self._depth += 1

    def reopen(self) -> None:
        """Leave a critical section entered with ``close()``."""
        if self._depth <= 0:
            raise RuntimeError("InputGate.reopen() without a matching close()")
        self._depth -= 1
        if self._depth == 0:
            self._wake_next()
            if self._on_open is not None and self._broken is None:
                self._on_open()

    def closed(self) -> _Closed:
        """A context manager (``with`` or ``async with``) that closes the gate."""
        return _Closed(self)

    async def wait_open(self) -> None:
        """Return when the caller may deliver its event; raises ``InputGateBrokenError``."""
        if self._broken is not None:
            raise InputGateBrokenError("the object's input gate is broken") from self._broken
        if self._depth == 0 and not self._queue:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._queue.append(waiter)
        self._wake_next()
        try:
            while True:
                await waiter
                if self._broken is not None:
                    raise InputGateBrokenError(
                        "the object's input gate is broken"
                    ) from self._broken
                if self._depth == 0:
                    break
                # Closed again before we ran: stay first in line.
                waiter = loop.create_future()
                self._queue[0] = waiter
        except BaseException:
            self._forget(waiter)
            raise
        self._queue.popleft()
        self._wake_next()

    def _wake_next(self) -> None:
        if self._depth == 0 and self._queue:
            head = self._queue[0]
            if not head.done():
                head.set_result(None)

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._queue.remove(waiter)
        except ValueError:
            return
        self._wake_next()

    def break_(self, exc: BaseException) -> None:
        """Fail every waiting and future ``wait_open()``: the object is being reset."""
        if self._broken is not None:
            return
        self._broken = exc
        for waiter in self._queue:
            if not waiter.done():
                waiter.set_result(None)

    async def block_concurrency_while(
        self, fn: Callable[[], Awaitable[T]], *, timeout: float | None = DEFAULT_BLOCK_TIMEOUT
    ) -> T:
        """``ctx.blockConcurrencyWhile(fn)``: run ``fn()`` with the gate closed.

        If ``fn`` raises, the gate breaks (Cloudflare resets the object) and
        the exception propagates. If it runs longer than ``timeout`` seconds,
        it is cancelled, the gate breaks, and ``BlockConcurrencyTimeoutError``
        is raised.
        """
        scope = asyncio.timeout(timeout)
        with self.closed():
            try:
                async with scope:
                    return await fn()
            except TimeoutError as exc:
                if not scope.expired():  # fn's own TimeoutError, not our limit
                    self.break_(exc)
                    raise
                error = BlockConcurrencyTimeoutError(
                    f"blockConcurrencyWhile() callback did not complete within {timeout} s; "
                    "the object will be reset"
                )
                error.__cause__ = exc
                self.break_(error)
                raise error from exc
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.break_(exc)
                raise

    blockConcurrencyWhile = block_concurrency_while


async def block_concurrency_while(
    gate: InputGate, fn: Callable[[], Awaitable[T]], *, timeout: float = DEFAULT_BLOCK_TIMEOUT
) -> T:
    """Function form of ``InputGate.block_concurrency_while``."""
    return await gate.block_concurrency_while(fn, timeout=timeout)


_NEVER = -1  # a write token that never completes: keeps a broken gate off the fast path


class OutputGate:
    """Holds outputs until the writes that preceded them are durable.

    Each output waits for every write begun before it (not for later ones),
    and outputs leave in the order they were produced. Tokens may complete
    in any order. The hot path, ``hold()`` with nothing pending, is one
    attribute check and a call.
    """

    __slots__ = ("_broken", "_held", "_next_token", "_on_broken", "_pending")

    def __init__(self, *, on_broken: Callable[[BaseException], None] | None = None) -> None:
        # Tokens not yet done, in issue order (dicts keep insertion order, so the
        # first key is the oldest pending write).
        self._pending: dict[int, None] = {}
        # (barrier, release, discard): released once every token <= barrier is done.
        self._held: deque[tuple[int, Callable[[], None], Callable[[], None] | None]] = deque()
        self._next_token = 1
        self._broken: BaseException | None = None
        self._on_broken = on_broken

    @property
    def pending(self) -> bool:
        """Whether any write is not yet durable (outputs would be held)."""
        return bool(self._pending)

    @property
    def held(self) -> int:
        """How many outputs are waiting."""
        return len(self._held)

    @property
    def broken(self) -> BaseException | None:
        return self._broken

    def begin_write(self) -> int:
        """A write started; outputs produced from now on wait for it."""
        token = self._next_token
        self._next_token += 1
        self._pending[token] = None
        return token

    def write_done(self, token: int) -> None:
        """The write is durable: release the outputs that were waiting only for it."""
        if token not in self._pending or self._broken is not None:
            return
        del self._pending[token]
        self._release_ready()

    def write_failed(self, token: int, exc: BaseException) -> None:
        """The write is lost: discard every held output and break the gate."""
        self._pending.pop(token, None)
        self.break_(exc)

    def hold(self, release: Callable[[], None], discard: Callable[[], None] | None = None) -> None:
        """Run ``release()`` now if no write is pending, else once those are durable.

        If a pending write fails, ``discard()`` runs instead (e.g. to answer the
        client with an error, as Cloudflare does). On a broken gate the output
        is discarded at once.
        """
        if not self._pending:
            release()
            return
        if self._broken is not None:
            _call(discard)
            return
        self._held.append((self._next_token - 1, release, discard))

    async def wait_released(self) -> None:
        """Wait until every output held so far has left (``OutputGateBrokenError`` if dropped)."""
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def released() -> None:
            if not done.done():
                done.set_result(None)

        def discarded() -> None:
            if not done.done():
                error = OutputGateBrokenError("outputs were discarded: a write failed")
                error.__cause__ = self._broken
                done.set_exception(error)

        self.hold(released, discarded)
        await done

    def _release_ready(self) -> None:
        # Every token below the oldest pending one is done.
        watermark = next(iter(self._pending)) - 1 if self._pending else self._next_token
        held = self._held
        while held and held[0][0] <= watermark:
            _, release, _discard = held.popleft()
            try:
                release()
            except Exception:
                logger.exception("releasing a held output failed")

    def break_(self, exc: BaseException) -> None:
        """Discard held outputs, refuse new ones, and report ``exc`` once."""
        if self._broken is not None:
            return
        self._broken = exc
        self._pending[_NEVER] = None
        held, self._held = self._held, deque()
        for _, _release, discard in held:
            _call(discard)
        if self._on_broken is not None:
            try:
                self._on_broken(exc)
            except Exception:
                logger.exception("output gate on_broken callback failed")


def _call(callback: Callable[[], None] | None) -> None:
    if callback is None:
        return
    try:
        callback()
    except Exception:
        logger.exception("discarding a held output failed")
