"""runtime/metrics.py on its own: histograms, and commit timing through the write tracker."""

from __future__ import annotations

from stateroom.runtime.gates import OutputGate
from stateroom.runtime.metrics import CommitObserver, Histogram, RuntimeMetrics, TimedWriteTracker


def test_histogram_buckets_are_cumulative_with_inf_last() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        h.observe(value)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert h.count == 4
    assert abs(h.sum - 3.65) < 1e-9


def test_timed_tracker_times_each_batch_and_keeps_the_gate_working() -> None:
    metrics = RuntimeMetrics(enabled=True)
    observer: CommitObserver = metrics  # the protocol a storage engine may call too
    gate = OutputGate()
    tracker = TimedWriteTracker(gate, observer)
    released: list[str] = []
    first = tracker.begin_write()
    gate.hold(lambda: released.append("after first"))
    assert gate.pending and released == []
    tracker.write_done(first)
    assert released == ["after first"]
    assert metrics.commits == 1 and metrics.commit_seconds.count == 1
    second = tracker.begin_write()
    tracker.write_failed(second, RuntimeError("disk full"))
    assert metrics.commit_failures == 1 and metrics.commits == 1
    assert gate.broken is not None


def test_activations_wakes_and_departures_are_counted_and_named() -> None:
    metrics = RuntimeMetrics()
    metrics.activated("ROOMS", "ab" * 32, "lobby", 0.002, woke=False)
    metrics.activated("ROOMS", "ab" * 32, "lobby", 0.001, woke=True)
    metrics.left_memory(hibernated=True)
    metrics.left_memory(hibernated=False)
    assert (metrics.activations, metrics.wakes) == (2, 1)
    assert (metrics.hibernations, metrics.evictions) == (1, 1)
    assert metrics.names == {("ROOMS", "ab" * 32): "lobby"}
    assert metrics.wake_seconds.count == 1
