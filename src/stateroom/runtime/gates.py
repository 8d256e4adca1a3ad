"""The output gate, and the errors of both gates: Durable Objects' concurrency model.

Cloudflare ("Durable Objects: Easy, Fast, Correct -- Choose three"):

* **Input gate.** ``input_gate.py`` (compiled: every message reads it).
* **Output gate.** Outputs (a response, a WebSocket message) produced while a
  write is not yet durable are held, and leave in order once it is. If the
  write fails, they never leave: they are discarded and the object is
  reset, so nobody outside can have seen a state that was lost.

The gate does no I/O and knows nothing of storage: the storage layer calls
``begin_write()``/``write_done()``/``write_failed()`` (it sees the output
gate only as a ``WriteTracker``), and the runtime calls the rest. The error
classes live here, in an interpreted module: mypyc compiles no exception
class with two bases.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

__all__ = [
    "BlockConcurrencyTimeoutError",
    "ExceededCpuError",
    "GateBrokenError",
    "ObjectResetError",
    "OutputGate",
    "OutputGateBrokenError",
]

logger = logging.getLogger(__name__)


class ObjectResetError(Exception):
    """The object instance is unusable and the runtime must reset it."""


class BlockConcurrencyTimeoutError(ObjectResetError, TimeoutError):
    """A ``blockConcurrencyWhile()`` callback exceeded its time limit."""


class ExceededCpuError(ObjectResetError):
    """An event of the object held the event loop past the CPU limit: the object was reset."""


class GateBrokenError(ObjectResetError):
    """A gate was broken by a fatal error; ``__cause__`` is that error."""


class OutputGateBrokenError(GateBrokenError):
    """A write failed, so held outputs were discarded and new ones are refused."""


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
