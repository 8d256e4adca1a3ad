"""What the object runtime counts: plain integers, read when metrics are scraped.

The runtime adds to a ``RuntimeMetrics`` on events that are rare next to messages
(an activation, an eviction, an alarm run, a commit); nothing here runs per WebSocket
message (the server counts messages on its connections). Exporting is someone
else's job: ``stateroom.admin.metrics`` turns these numbers into Prometheus
exposition when ``/__stateroom/metrics`` is read.

Storage commits are observed through ``CommitObserver``, a protocol of two calls:
the runtime times the commits it sees from its side (``TimedWriteTracker``, the
write tracker it gives an object's storage when metrics are on: from a batch's
first write until it is durable), and a storage engine may call the same two
methods itself with its own timing.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Protocol


class Histogram:
    """Fixed buckets (upper bounds, seconds), counts per bucket, a sum: no per-call allocation."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it), Prometheus' ``le`` buckets."""
        out = []
        total = 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


# Seconds: from a quarter of a millisecond (an in-memory commit) to ten seconds.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0)
# Event-loop lag: from 5 ms (hardly noticed) to the CPU limit.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


# Objects remembered by name for the dashboard (past this, new ones are not).
MAX_NAMES = 100_000


class CommitObserver(Protocol):
    """Told of each storage commit: how long it took, or that it failed."""

    def committed(self, seconds: float) -> None: ...

    def commit_failed(self) -> None: ...


class RuntimeMetrics:
    """Counters of one process's object runtime (shared by the versions ``dev`` reloads).

    ``enabled`` switches on the measurements that cost something on a hot-ish path
    (commit timing, the loop-lag histogram); the counters are always kept.
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.activations = 0
        self.wakes = 0  # activations of an object that had hibernated with its sockets
        self.evictions = 0
        self.hibernations = 0
        self.resets = 0
        self.cpu_limit_resets = 0
        self.activation_seconds = Histogram(LATENCY_BUCKETS)
        self.wake_seconds = Histogram(LATENCY_BUCKETS)
        self.alarm_runs = 0
        self.alarm_retries = 0
        self.alarm_failures = 0
        self.commits = 0
        self.commit_failures = 0
        self.commit_seconds = Histogram(LATENCY_BUCKETS)
        self.loop_lag_seconds = Histogram(LAG_BUCKETS)
        self.loop_lag_max = 0.0
        # Objects activated in this process ((binding, hex id) -> name), for the dashboard
        # to list and name objects that have since left memory.
        self.names: dict[tuple[str, str], str | None] = {}
        # Bumped on every change the dashboard shows (an object came or went).
        self.version = 0

    # -- CommitObserver ----------------------------------------------------------------

    def committed(self, seconds: float) -> None:
        self.commits += 1
        self.commit_seconds.observe(seconds)

    def commit_failed(self) -> None:
        self.commit_failures += 1

    # -- what the runtime reports ---------------------------------------------------------

    def activated(
        self, binding: str, hex_id: str, name: str | None, seconds: float, woke: bool
    ) -> None:
        self.activations += 1
        self.activation_seconds.observe(seconds)
        if woke:
            self.wakes += 1
            self.wake_seconds.observe(seconds)
        if len(self.names) < MAX_NAMES:
            self.names[binding, hex_id] = name
        self.version += 1

    def left_memory(self, hibernated: bool) -> None:
        if hibernated:
            self.hibernations += 1
        else:
            self.evictions += 1
        self.version += 1

    def loop_lag(self, seconds: float) -> None:
        self.loop_lag_seconds.observe(seconds)
        if seconds > self.loop_lag_max:
            self.loop_lag_max = seconds


class WriteTrackerLike(Protocol):
    def begin_write(self) -> int: ...

    def write_done(self, token: int) -> None: ...

    def write_failed(self, token: int, exc: BaseException) -> None: ...


class TimedWriteTracker:
    """An object's output gate as its storage's write tracker, timing each batch.

    A batch starts at its first write (``begin_write``) and ends durable
    (``write_done``) or lost (``write_failed``); the time between goes to
    ``observer``. Used only with metrics on: with them off, the gate itself is the
    tracker.
    """

    __slots__ = ("_gate", "_observer", "_started")

    def __init__(self, gate: WriteTrackerLike, observer: CommitObserver) -> None:
        self._gate = gate
        self._observer = observer
        self._started: dict[int, float] = {}

    def begin_write(self) -> int:
        token = self._gate.begin_write()
        self._started[token] = time.perf_counter()
        return token

    def write_done(self, token: int) -> None:
        started = self._started.pop(token, None)
        if started is not None:
            self._observer.committed(time.perf_counter() - started)
        self._gate.write_done(token)

    def write_failed(self, token: int, exc: BaseException) -> None:
        self._started.pop(token, None)
        self._observer.commit_failed()
        self._gate.write_failed(token, exc)
