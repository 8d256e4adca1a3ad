"""Cron triggers (``triggers.crons``): the scheduler on a virtual clock, ``scheduled()`` in
both API forms, and wrangler's dev route ``/__scheduled?cron=...`` over real sockets."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stateroom.config import ConfigError, load_config
from stateroom.runtime.cron import CronError, CronScheduler, next_fire, parse_cron
from stateroom.testing import VirtualTimeLoop, run_with_virtual_time
from support import ROOT, fetch, serve

CRON = "tests/apps/cron"


def ms(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000


def test_cron_grammar() -> None:
    base = ms("2026-12-06 23:58:00") / 1000  # a Sunday
    assert next_fire("*/5 * * * *", base) * 1000 == ms("2026-12-07 00:00:00")
    assert next_fire("0 9 * * MON", base) * 1000 == ms("2026-12-07 09:00:00")
    assert next_fire("0 0 L * *", base) * 1000 == ms("2026-12-31 00:00:00")
    assert next_fire("30 2 * * 1#2", base) * 1000 == ms("2026-12-14 02:30:00")
    parse_cron("0 0 1 JAN,JUL *")
    for bad in ["* * * *", "* * * * * *", "61 * * * *", "x * * * *", ""]:
        with pytest.raises(CronError):
            parse_cron(bad)


def test_scheduler_fires_each_occurrence_in_order_on_a_virtual_clock() -> None:
    base = ms("2026-12-06 23:58:00") / 1000
    runs: list[tuple[str, float]] = []

    async def main(loop: VirtualTimeLoop) -> None:
        start = loop.time()

        async def run(cron: str, when_ms: float) -> None:
            runs.append((cron, when_ms))

        scheduler = CronScheduler(
            ("*/5 * * * *", "0 9 * * MON"),
            run,
            wall_clock=lambda: base + loop.time() - start,
            catch_up=True,
        )
        scheduler.start()
        await loop.advance(60)
        assert runs == []  # nothing due yet
        await loop.advance(60)  # 00:00
        assert runs == [("*/5 * * * *", ms("2026-12-07 00:00:00"))]
        await loop.advance(9 * 3600)  # to 09:02, every five minutes and Monday 09:00
        fives = [r for r in runs if r[0] == "*/5 * * * *"]
        assert len(fives) == 9 * 12 + 1
        assert all(b[1] - a[1] == 300_000 for a, b in itertools.pairwise(fives))
        assert ("0 9 * * MON", ms("2026-12-07 09:00:00")) in runs
        scheduler.cancel_all()
        await loop.advance(3600)
        assert len(runs) == len(fives) + 1  # cancelled: no more

    run_with_virtual_time(main)


def test_missed_occurrences_are_skipped_without_catch_up() -> None:
    """A process that could not run for an hour (or a clock that jumped) runs the next
    occurrence, not the twelve it missed: Cloudflare does not replay them."""
    base = ms("2026-12-06 23:58:00") / 1000
    runs: list[float] = []

    async def main(loop: VirtualTimeLoop) -> None:
        start = loop.time()

        async def run(cron: str, when_ms: float) -> None:
            runs.append(when_ms)

        scheduler = CronScheduler(
            ("*/5 * * * *",), run, wall_clock=lambda: base + loop.time() - start
        )
        scheduler.start()
        await loop.advance(3600)
        assert runs == [ms("2026-12-07 00:00:00")]
        await loop.advance(300)
        assert runs[1:] == [ms("2026-12-07 01:00:00")]
        scheduler.cancel_all()

    run_with_virtual_time(main)


def test_triggers_crons_is_read_and_checked(tmp_path: Any) -> None:
    assert load_config(ROOT / CRON).crons == ("*/5 * * * *", "0 9 * * MON")
    (tmp_path / "worker.py").write_text("")
    (tmp_path / "wrangler.toml").write_text(
        'name = "x"\nmain = "worker.py"\n[triggers]\ncrons = ["* * *"]\n'
    )
    with pytest.raises(ConfigError, match=r"`triggers.crons\[0\]`: '\* \* \*' has 3 fields"):
        load_config(tmp_path)


@pytest.mark.stateroom_app(CRON)
async def test_scheduled_runs_when_the_test_clock_passes_a_trigger(
    stateroom_app: Any, stateroom_clock: Any
) -> None:
    module = stateroom_app.worker.module
    module.RUNS.clear()
    await stateroom_clock.advance(3600)
    runs = module.RUNS
    assert len(runs) == 12 and {r["cron"] for r in runs} == {"*/5 * * * *"}
    assert all(r["scheduledTime"] % 300_000 == 0 for r in runs)  # on five-minute marks


def test_dev_route_runs_scheduled_now() -> None:
    with serve(CRON, "--in-memory", command="dev") as srv:
        assert fetch(srv, "/__scheduled?cron=*/5+*+*+*+*") == (200, "Ran scheduled event")
        assert fetch(srv, "/cdn-cgi/handler/scheduled?cron=0+9+*+*+MON&time=1700000000000") == (
            200,
            "Ran scheduled event",
        )
        assert fetch(srv, "/__scheduled?cron=nope")[0] == 400
        _, body = fetch(srv, "/runs")
        runs = json.loads(body)
        assert [r["cron"] for r in runs] == ["*/5 * * * *", "0 9 * * MON"]
        assert runs[1]["scheduledTime"] == 1700000000000


def test_the_dev_route_is_off_in_serve_unless_asked() -> None:
    with serve(CRON, "--in-memory") as srv:
        assert fetch(srv, "/__scheduled?cron=*/5+*+*+*+*")[0] == 404  # the app's own 404
    with serve(CRON, "--in-memory", "--test-scheduled") as srv:
        assert fetch(srv, "/__scheduled?cron=*/5+*+*+*+*") == (200, "Ran scheduled event")


def test_a_cloudflare_python_scheduled_handler() -> None:
    with serve("tests/apps/cron-workers", "--in-memory", command="dev") as srv:
        assert fetch(srv, "/__scheduled?cron=0+*+*+*+*&time=1700000000000")[0] == 200
        assert json.loads(fetch(srv, "/")[1]) == [["0 * * * *", 1700000000000, True]]
