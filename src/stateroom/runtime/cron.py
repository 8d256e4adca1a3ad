"""Cron triggers: ``triggers.crons`` in the configuration run the Worker's ``scheduled()``.

As on Cloudflare: five fields (minute, hour, day of month, month, day of week), in UTC,
with ranges, steps, lists, month and day names, ``L`` and ``#``. The grammar and the
next fire time are ``croniter``'s. A ``CronScheduler`` keeps one timer per expression on
the event loop: when it fires it re-arms for the next occurrence and starts the run
(each run is its own task; a slow run does not delay the next trigger).

The wall clock is a parameter: tests give one tied to a virtual loop's time. Occurrences
missed while the process could not run (stopped, or the clock jumped) are skipped, as
Cloudflare does not replay them; with ``catch_up`` (a test clock moved forward by an
hour) each one runs, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("stateroom.runtime")


class CronError(ValueError):
    """A cron expression that Cloudflare would not take."""


def parse_cron(expression: str) -> Any:
    """The expression, checked: five fields, each valid.

    ``croniter`` is imported here, not with the module: a Worker without cron triggers
    does not load it (nor ``dateutil``), and a server's heap stays as small as it was."""
    from croniter import CroniterError, croniter

    fields = expression.split()
    if len(fields) != 5:
        raise CronError(
            f"{expression!r} has {len(fields)} fields; a cron trigger has 5 "
            "(minute hour day-of-month month day-of-week), e.g. '*/5 * * * *'"
        )
    try:
        return croniter(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except (CroniterError, ValueError, KeyError) as exc:
        raise CronError(f"{expression!r} is not a valid cron expression: {exc}") from None


def next_fire(expression: str, after: float) -> float:
    """The first time (epoch seconds, UTC) strictly after ``after`` that matches."""
    from croniter import croniter

    it = croniter(expression, datetime.fromtimestamp(after, UTC))
    return float(it.get_next(float))


Run = Callable[[str, float], Awaitable[Any]]


class CronScheduler:
    """Fires ``run(cron, scheduled_time_ms)`` at each occurrence of each expression."""

    def __init__(
        self,
        crons: tuple[str, ...],
        run: Run,
        *,
        wall_clock: Callable[[], float] = time.time,
        catch_up: bool = False,
    ) -> None:
        self.catch_up = catch_up
        self.crons = crons
        self.run = run
        self.wall_clock = wall_clock
        self.loop = asyncio.get_running_loop()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        for cron in dict.fromkeys(self.crons):
            self._arm(cron, self.wall_clock())

    def _arm(self, cron: str, after: float) -> None:
        when = next_fire(cron, after)
        delay = max(0.0, when - self.wall_clock())
        self._timers[cron] = self.loop.call_later(delay, self._fire, cron, when)

    def _fire(self, cron: str, when: float) -> None:
        # The next occurrence after this one (never this one again, even if the wall
        # clock is a little behind the loop's).
        self._arm(cron, when if self.catch_up else max(when, self.wall_clock()))
        task = self.loop.create_task(self._run(cron, when))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, cron: str, when: float) -> None:
        try:
            await self.run(cron, when * 1000)
        except Exception:
            logger.exception("scheduled() failed for cron %r", cron)

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
