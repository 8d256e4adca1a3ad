"""The alarm scheduler: one persisted alarm per object, fired at least once.

Each namespace keeps a timer per object with an alarm. A firing reaches the
object as a stub does, through its channel (``channel.py``, which also holds
what ``alarm(alarmInfo)`` does on the instance): it wakes the object
(constructing it if it was evicted or hibernated) and calls
``alarm(alarmInfo)``. A handler that raises is retried up to six times with
exponential backoff from two seconds; after a success the alarm is cleared
unless the handler set a new one. Alarms live in each object's storage, so on
start-up the scheduler reads them back and fires those whose time has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from stateroom.runtime.channel import AlarmInvocationInfo as AlarmInvocationInfo
from stateroom.runtime.trace import ObjectInfo

if TYPE_CHECKING:
    from stateroom.api.namespace import DurableObjectId
    from stateroom.runtime.actor import ActorNamespace

logger = logging.getLogger("stateroom.alarms")

MAX_RETRIES = 6


class AlarmScheduler:
    """Timers for the alarms of one Durable Object namespace."""

    def __init__(self, namespace: ActorNamespace) -> None:
        self.namespace = namespace
        self.loop = asyncio.get_running_loop()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # When each timer fires: object id -> (epoch ms, retry number; 0: the alarm itself).
        self.scheduled: dict[str, tuple[int, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def update(self, object_id: DurableObjectId, when_ms: int | None) -> None:
        """The committed alarm of ``object_id`` is now ``when_ms`` (None: no alarm)."""
        self._schedule(object_id, when_ms, 0, None)

    def _schedule(
        self, object_id: DurableObjectId, when_ms: int | None, retry: int, delay: float | None
    ) -> None:
        old = self._timers.pop(object_id.hex, None)
        if old is not None:
            old.cancel()
        if when_ms is None:
            self.scheduled.pop(object_id.hex, None)
            return
        if delay is None:
            delay = max(0.0, when_ms / 1000 - time.time())
        self.scheduled[object_id.hex] = (round((time.time() + delay) * 1000), retry)
        self._timers[object_id.hex] = self.loop.call_later(
            delay, self._fire, object_id, when_ms, retry
        )

    def _fire(self, object_id: DurableObjectId, when_ms: int, retry: int) -> None:
        self._timers.pop(object_id.hex, None)
        self.scheduled.pop(object_id.hex, None)
        task = self.loop.create_task(self._run(object_id, when_ms, retry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, object_id: DurableObjectId, when_ms: int, retry: int) -> None:
        metrics = self.namespace.options.metrics
        metrics.alarm_runs += 1
        if retry:
            metrics.alarm_retries += 1
        try:
            await self.namespace.channel(object_id).alarm(when_ms, retry)
        except Exception:
            metrics.alarm_failures += 1
            info = self._describe(object_id)
            if retry >= MAX_RETRIES:
                logger.exception(
                    "alarm() of %s failed %d times; giving up",
                    info,
                    retry + 1,
                    extra=info.fields(),
                )
                await self._give_up(object_id, when_ms)
                return
            delay = self.namespace.options.alarm_retry_delay * 2**retry
            logger.warning(
                "alarm() of %s raised; retry %d in %.1fs",
                info,
                retry + 1,
                delay,
                exc_info=True,
                extra=info.fields(),
            )
            self._schedule(object_id, when_ms, retry + 1, delay)

    def _describe(self, object_id: DurableObjectId) -> ObjectInfo:
        host = self.namespace.hosts.get(object_id.hex)
        name = host.id.name if host is not None else object_id.name
        return ObjectInfo(self.namespace.cls.__name__, name, object_id.hex)

    async def _give_up(self, object_id: DurableObjectId, when_ms: int) -> None:
        try:
            await self.namespace.channel(object_id).clear_alarm(when_ms)
        except Exception:
            logger.exception("could not clear the failed alarm of %s", object_id)

    def recover(self) -> int:
        """Re-arm the alarms persisted by earlier runs; returns how many were found."""
        found = 0
        for hex_id, when_ms, name in self.namespace.persisted_alarms():
            # The stored name comes back: ctx.id.name in alarm() after a restart.
            self.update(self.namespace.make_id(hex_id, name), when_ms)
            found += 1
        if found:
            logger.info("re-armed %d alarms of %s", found, self.namespace.cls.__name__)
        return found

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.scheduled.clear()
        for task in self._tasks:
            task.cancel()
