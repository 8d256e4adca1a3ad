"""The CPU watchdog: code that holds the event loop too long is named, and its object reset.

Every object runs on one event loop, so one handler in a CPU loop (or a
``time.sleep()``) holds up every other object and socket. Python code cannot be
preempted from outside; what the watchdog can do is see it and act once control
comes back:

* the loop beats every ``interval`` seconds (a timer callback noting the time); the
  gap between when a beat was due and when it ran is the loop's lag, counted in
  ``RuntimeMetrics.loop_lag_seconds``;
* a thread checks the last beat. When the loop has been held past ``lag_threshold``
  it samples the loop thread's stack (``sys._current_frames()``) and finds the
  Durable Object whose code is on it (a frame whose ``self`` is an object's
  instance); when the loop runs again, the stall is logged with that object and
  stack;
* past ``cpu_limit`` (30 s by default, Cloudflare's CPU limit) it logs an error at
  once, with the stack, and marks the object: when the handler returns control, the
  event's caller gets ``ExceededCpuError`` and the object is reset, as Cloudflare
  resets an object over its CPU limit. Stalls in the Worker itself are reported,
  with nothing to reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING

from stateroom.runtime.metrics import RuntimeMetrics
from stateroom.runtime.trace import ObjectInfo, describe

if TYPE_CHECKING:
    from stateroom.runtime.actor import ActorHost

logger = logging.getLogger("stateroom.watchdog")

# How many innermost frames a report shows.
STACK_LIMIT = 12


class Stall:
    """One stretch of the loop being held, as the watchdog thread saw it."""

    __slots__ = ("beat", "culprit", "host", "over_limit", "stack")

    def __init__(self, beat: int, host: ActorHost | None, culprit: str, stack: str) -> None:
        self.beat = beat
        self.host = host
        self.culprit = culprit
        self.stack = stack
        self.over_limit = False


class Watchdog:
    """Watches one event loop (the one running when it is started)."""

    def __init__(
        self,
        hosts: Callable[[], Iterable[ActorHost]],
        metrics: RuntimeMetrics,
        *,
        cpu_limit: float | None = 30.0,
        lag_threshold: float = 1.0,
        interval: float | None = None,
    ) -> None:
        self.hosts = hosts
        self.metrics = metrics
        self.cpu_limit = cpu_limit
        self.lag_threshold = lag_threshold
        smallest = min(lag_threshold, cpu_limit or lag_threshold)
        # A beat (and a look from the thread) four times a second at most: the cost is per
        # second, not per message, and stays out of the message path's figures.
        self.interval = interval if interval is not None else min(0.25, smallest / 4)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._beat_no = 0
        self._last_beat = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stall: Stall | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._last_beat = time.monotonic()
        self._timer = self._loop.call_later(self.interval, self._beat)
        self._thread = threading.Thread(target=self._watch, name="stateroom-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    # -- the loop's side ----------------------------------------------------------------

    def _beat(self) -> None:
        now = time.monotonic()
        lag = now - self._last_beat - self.interval
        self._beat_no += 1
        self._last_beat = now
        if lag > 0.0 and self.metrics.enabled:
            self.metrics.loop_lag(lag)
        stall, self._stall = self._stall, None
        if stall is not None and lag >= self.lag_threshold:
            logger.warning(
                "the event loop was held for %.2fs by %s; every other object and socket "
                "waited. Stack when it was seen:\n%s",
                lag,
                stall.culprit,
                stall.stack,
                extra=_fields(stall.host),
            )
        if self._loop is not None and not self._stop.is_set():
            self._timer = self._loop.call_later(self.interval, self._beat)

    def _enforce(self, stall: Stall, held: float) -> None:
        """Back on the loop after a stall past the CPU limit: reset the object if its
        event has not already done it on the way out."""
        host = stall.host
        if host is not None and host.cpu_exceeded is not None and not host.evicted:
            reason = host.cpu_exceeded
            host.cpu_exceeded = None
            self.metrics.cpu_limit_resets += 1
            host.reset(reason)

    # -- the watchdog thread -------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            beat = self._beat_no
            held = time.monotonic() - self._last_beat - self.interval
            if held < self.lag_threshold and (self.cpu_limit is None or held < self.cpu_limit):
                continue
            stall = self._stall
            if stall is None or stall.beat != beat:
                stall = self._sample(beat)
                if stall is None:
                    continue
                self._stall = stall
            if self.cpu_limit is not None and held >= self.cpu_limit and not stall.over_limit:
                stall.over_limit = True
                self._over_limit(stall, held)

    def _sample(self, beat: int) -> Stall | None:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return None
        stack = "".join(traceback.format_stack(frame, limit=STACK_LIMIT))
        host = self._find_host(frame)
        culprit = str(describe(host)) if host is not None else "the Worker or the runtime"
        del frame
        return Stall(beat, host, culprit, stack)

    def _find_host(self, frame: FrameType | None) -> ActorHost | None:
        """The object whose code is on the stack: the innermost frame of a method of its
        instance (or of its host, when the runtime runs as pure Python)."""
        selves: list[object] = []
        while frame is not None:
            code = frame.f_code
            if code.co_argcount and code.co_varnames[0] == "self":
                value = frame.f_locals.get("self")
                if value is not None:
                    selves.append(value)
            frame = frame.f_back
        if not selves:
            return None
        try:
            hosts = list(self.hosts())
        except RuntimeError:  # a dict changed size under us: try at the next sample
            return None
        by_instance = {id(h.instance): h for h in hosts if h.instance is not None}
        by_host = {id(h): h for h in hosts}
        for value in selves:
            host = by_instance.get(id(value)) or by_host.get(id(value))
            if host is not None:
                return host
        return None

    def _over_limit(self, stall: Stall, held: float) -> None:
        limit = self.cpu_limit
        host = stall.host
        logger.error(
            "%s has held the event loop for %.1fs, past the CPU limit (%.1fs)%s. Stack:\n%s",
            stall.culprit,
            held,
            limit,
            "; it will be reset when it gives control back" if host is not None else "",
            stall.stack,
            extra=_fields(host),
        )
        if host is None or self._loop is None:
            return
        host.cpu_exceeded = (
            f"Durable Object exceeded its CPU time limit and was reset: an event held the "
            f"event loop for more than {limit:g}s (--cpu-limit). Python code cannot be "
            f"interrupted, so the event ran to its end; its result is discarded."
        )
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._loop.call_soon_threadsafe(self._enforce, stall, held)


def _fields(host: ActorHost | None) -> dict[str, str | None]:
    if host is None:
        return {}
    info: ObjectInfo = describe(host)
    return info.fields()
