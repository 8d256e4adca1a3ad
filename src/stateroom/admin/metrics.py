"""Prometheus exposition of what the server and the runtime count.

Nothing is counted here: the numbers are the plain integers the runtime keeps in
``RuntimeMetrics``, the server on its connections, and ``Front`` per response status.
A custom collector reads them when ``/__stateroom/metrics`` is scraped, so the
per-message path never calls into ``prometheus_client``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from stateroom.runtime.metrics import Histogram, RuntimeMetrics

if TYPE_CHECKING:
    from stateroom.front import Front
    from stateroom.server.server import Server

# The text format every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _histogram(name: str, text: str, h: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, text, buckets=[(le, float(n)) for le, n in h.cumulative()], sum_value=h.sum
    )


class StateroomCollector(Collector):
    def __init__(self, front: Front, server: Callable[[], Server | None]) -> None:
        self.front = front
        self.server = server

    def collect(self) -> Iterator[Metric]:
        m: RuntimeMetrics = self.front.metrics
        requests = CounterMetricFamily(
            "stateroom_requests",
            "HTTP requests answered by the Worker, by status",
            labels=["status"],
        )
        for status, n in sorted(self.front.responses.items()):
            requests.add_metric([str(status)], n)
        yield requests
        server = self.server()
        if server is not None:
            open_sockets, received, sent = server.websocket_counts()
            messages = CounterMetricFamily(
                "stateroom_websocket_messages",
                "WebSocket messages, received from clients (in) and sent to them (out)",
                labels=["direction"],
            )
            messages.add_metric(["in"], received)
            messages.add_metric(["out"], sent)
            yield messages
            yield GaugeMetricFamily(
                "stateroom_websockets_open", "open WebSocket connections", value=open_sockets
            )
        live = hibernated_objects = hibernated_sockets = 0
        runtime = self.front.runtime
        if runtime is not None:
            for ns in runtime.namespaces.values():
                for host in list(ns.hosts.values()):
                    if host.instance is not None:
                        live += 1
                    elif host.hibernation.sockets:
                        hibernated_objects += 1
                        hibernated_sockets += len(host.hibernation.sockets)
        yield GaugeMetricFamily("stateroom_objects_live", "Durable Objects in memory", value=live)
        yield GaugeMetricFamily(
            "stateroom_objects_hibernated",
            "Durable Objects out of memory whose hibernatable WebSockets stay open",
            value=hibernated_objects,
        )
        yield GaugeMetricFamily(
            "stateroom_websockets_hibernated",
            "open WebSockets whose object is hibernated",
            value=hibernated_sockets,
        )
        for name, text, value in (
            ("stateroom_activations", "Durable Object instances constructed", m.activations),
            ("stateroom_wakes", "activations of hibernated objects by their sockets", m.wakes),
            ("stateroom_evictions", "objects evicted from memory", m.evictions),
            ("stateroom_hibernations", "objects hibernated (sockets kept open)", m.hibernations),
            ("stateroom_resets", "objects reset after a fatal error", m.resets),
            (
                "stateroom_cpu_limit_resets",
                "objects reset for holding the loop",
                m.cpu_limit_resets,
            ),
            ("stateroom_alarm_runs", "alarm() runs, retries included", m.alarm_runs),
            ("stateroom_alarm_retries", "alarm() runs that were retries", m.alarm_retries),
            ("stateroom_alarm_failures", "alarm() runs that raised", m.alarm_failures),
            ("stateroom_storage_commits", "storage write batches made durable", m.commits),
            ("stateroom_storage_commit_failures", "storage commits that failed", m.commit_failures),
        ):
            yield CounterMetricFamily(name, text, value=value)
        yield _histogram(
            "stateroom_activation_seconds", "time to construct an instance", m.activation_seconds
        )
        yield _histogram(
            "stateroom_wake_seconds", "time to wake a hibernated object", m.wake_seconds
        )
        yield _histogram(
            "stateroom_storage_commit_seconds",
            "from a batch's first write until it is durable",
            m.commit_seconds,
        )
        yield _histogram(
            "stateroom_event_loop_lag_seconds",
            "how late the event loop ran a timer (time it was held)",
            m.loop_lag_seconds,
        )
        yield GaugeMetricFamily(
            "stateroom_event_loop_lag_max_seconds", "the longest lag seen", value=m.loop_lag_max
        )


def make_registry(front: Front, server: Callable[[], Server | None]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateroomCollector(front, server))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
