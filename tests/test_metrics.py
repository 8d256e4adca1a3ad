"""Prometheus metrics at /__stateroom/metrics, over real sockets (tests/apps/dx)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from support import ROOT, RunningServer, fetch, serve

APP = "tests/apps/dx"
TOKEN = "s3cret-token"


def scrape(srv: RunningServer, token: str | None = None) -> dict[str, float]:
    """Every sample of the exposition, by name and labels: ``name{k="v"}`` -> value."""
    request = urllib.request.Request(srv.url + "/__stateroom/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def wait_for(
    srv: RunningServer, check: Callable[[dict[str, float]], bool], timeout: float = 10.0
) -> dict[str, float]:
    """Scrape until ``check`` holds (the runtime's timers fire on their own schedule)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(srv)
        if check(samples) or time.monotonic() > deadline:
            assert check(samples), samples
            return samples
        time.sleep(0.02)


def test_dev_counts_requests_messages_objects_commits_and_hibernation() -> None:
    with serve(APP, "--hibernation-timeout", "0.3", command="dev") as srv:
        before = scrape(srv)
        assert before['stateroom_websocket_messages_total{direction="in"}'] == 0
        assert before["stateroom_activations_total"] == 0
        assert fetch(srv, "/room/a/put?k=x&v=1") == (200, "ok")
        assert fetch(srv, "/nowhere") == (404, "not found")
        with connect(srv.ws_url + "/room/a/ws?user=ann") as ws:
            for i in range(3):
                ws.send(f"m{i}")
                assert ws.recv(timeout=5) == f"echo: m{i}"
            live = scrape(srv)
            assert live['stateroom_websocket_messages_total{direction="in"}'] == 3
            assert live['stateroom_websocket_messages_total{direction="out"}'] == 3
            assert live["stateroom_websockets_open"] == 1
            assert live['stateroom_requests_total{status="200"}'] == 1
            assert live['stateroom_requests_total{status="404"}'] == 1
            assert live['stateroom_requests_total{status="101"}'] == 1
            assert live["stateroom_activations_total"] == 1
            assert live["stateroom_objects_live"] == 1
            assert live["stateroom_storage_commits_total"] >= 1
            assert live["stateroom_storage_commit_seconds_count"] >= 1
            assert live["stateroom_storage_commit_seconds_sum"] > 0
            # The object hibernates with its socket open...
            hibernated = wait_for(srv, lambda s: s["stateroom_objects_hibernated"] == 1)
            assert hibernated["stateroom_websockets_hibernated"] == 1
            assert hibernated["stateroom_hibernations_total"] == 1
            assert hibernated["stateroom_objects_live"] == 0
            # ...and the next message wakes it: a wake, timed.
            ws.send("again")
            assert ws.recv(timeout=5) == "echo: again"
            woke = scrape(srv)
            assert woke["stateroom_wakes_total"] == 1
            assert woke["stateroom_wake_seconds_count"] == 1
            assert woke["stateroom_activations_total"] == 2
        closed = wait_for(srv, lambda s: s["stateroom_websockets_open"] == 0)
        # Counts of closed connections are kept.
        assert closed['stateroom_websocket_messages_total{direction="in"}'] == 4


def test_alarm_runs_retries_and_event_loop_lag() -> None:
    with serve(APP, "--alarm-retry-delay", "0.05", "--lag-threshold", "0.1", command="dev") as srv:
        assert fetch(srv, "/room/b/alarm?ms=0&fail=1") == (200, "set")
        # The first run and its retries (0.05 s, 0.1 s, ...) all fail.
        samples = wait_for(srv, lambda s: s["stateroom_alarm_retries_total"] >= 2)
        assert samples["stateroom_alarm_runs_total"] >= 3
        assert samples["stateroom_alarm_failures_total"] >= 3
        assert fetch(srv, "/room/b/spin?s=0.3") == (200, "spun")
        lag = scrape(srv)
        assert lag["stateroom_event_loop_lag_max_seconds"] >= 0.25
        assert (
            lag['stateroom_event_loop_lag_seconds_bucket{le="0.25"}']
            < (lag['stateroom_event_loop_lag_seconds_bucket{le="+Inf"}'])
        )


def test_serve_has_no_metrics_unless_asked_and_then_only_with_the_token() -> None:
    with serve(APP) as srv:
        # Off: the path is the Worker's, like any other.
        assert fetch(srv, "/__stateroom/metrics") == (404, "not found")
    with serve(APP, "--metrics", "--admin-token", TOKEN) as srv:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            request = urllib.request.Request(srv.url + "/__stateroom/metrics", headers=headers)
            try:
                urllib.request.urlopen(request, timeout=10)
                raise AssertionError("metrics answered without the token")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
        assert fetch(srv, f"/__stateroom/metrics?token={TOKEN}")[0] == 200
        samples = scrape(srv, TOKEN)
        assert samples["stateroom_activations_total"] == 0
        # --metrics alone does not open the dashboard.
        assert fetch(srv, f"/__stateroom/?token={TOKEN}")[0] == 404


def test_serve_refuses_metrics_without_a_token() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stateroom", "serve", APP, "--port", "0", "--metrics"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "STATEROOM_ADMIN_TOKEN"},
    )
    assert result.returncode == 2, result.stderr
    assert "--metrics and --dashboard need a token" in result.stderr
