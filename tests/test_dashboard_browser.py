"""The dashboard in a real browser: Debian's chromium, driven by Playwright.

`make test` installs chromium where it is missing (tests/install-chromium.sh); Playwright
launches it by its executable path, so no browser build is downloaded. Screenshots go
to tmp/artifacts/ (STATEROOM_ARTIFACTS to choose another folder); docs/dashboard.png,
the README's picture, is written when it is missing or when STATEROOM_UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from support import ROOT, fetch, serve

APP = "tests/apps/dx"
TOKEN = "browser-token"
ARTIFACTS = Path(os.environ.get("STATEROOM_ARTIFACTS", ROOT / "tmp" / "artifacts"))
DOCS_SHOT = ROOT / "docs" / "dashboard.png"

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test installs it: tests/install-chromium.sh)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: the suite may run as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def test_an_object_appears_live_when_a_client_connects(browser: Any) -> None:
    with serve(
        APP, "--hibernation-timeout", "60", "--alarm-retry-delay", "60", command="dev"
    ) as srv:
        assert fetch(srv, "/room/lobby/put?k=topic&v=welcome") == (200, "ok")
        assert fetch(srv, "/room/lobby/note?text=hello_sql") == (200, "noted")
        page = browser.new_page(viewport={"width": 1200, "height": 820})
        page.goto(srv.url + "/__stateroom/")
        page.wait_for_selector("#status.on", timeout=10_000)
        assert page.locator('tr.object[data-name="alice"]').count() == 0
        page.screenshot(path=str(ARTIFACTS / "dashboard-before.png"), full_page=True)
        with connect(srv.ws_url + "/room/alice/ws?user=ann") as client:
            connected = time.perf_counter()
            row = page.wait_for_selector(
                'tr.object[data-name="alice"][data-state="live"]', timeout=10_000
            )
            latency = time.perf_counter() - connected
            assert row is not None
            text = row.inner_text()
            assert "room:alice" in text and "{'user': 'ann'}" in text
            client.send("hello")
            assert client.recv(timeout=5) == "echo: hello"
            page.wait_for_function(
                "() => Number(document.querySelector('[data-counter=messages_in] b')"
                ".textContent) >= 1",
                timeout=10_000,
            )
            # An alarm that fails: the error and its traceback, the retry's time.
            assert fetch(srv, "/room/bob/alarm?ms=0&fail=1") == (200, "set")
            page.wait_for_selector("#errors .error details", timeout=10_000)
            assert "alarm() of Room 'bob'" in page.inner_text("#errors")
            page.wait_for_selector('tr.object[data-name="bob"] >> text=retry 1', timeout=10_000)
            # The storage browser: the object's keys, read in its own event order.
            page.click('tr.object[data-name="lobby"] button')
            page.wait_for_selector("#storage td code", timeout=10_000)
            assert "'welcome'" in page.inner_text("#storage")
            page.wait_for_selector("#sql h4", timeout=10_000)
            assert "'hello_sql'" in page.inner_text("#sql")
            page.fill("#sql-query", "SELECT count(*) AS n FROM notes")
            page.click("#sql-form button")
            page.wait_for_selector("#sql-result td", timeout=10_000)
            assert page.inner_text("#sql-result td") == "1"
            shot = ARTIFACTS / "dashboard-live.png"
            page.screenshot(path=str(shot), full_page=True)
            if not DOCS_SHOT.exists() or os.environ.get("STATEROOM_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(shot, DOCS_SHOT)
        (ARTIFACTS / "dashboard-latency.json").write_text(
            json.dumps({"object_visible_after_connect_s": round(latency, 3)}) + "\n"
        )
        # Updated within the push interval (0.25 s) and a render, with room for a slow CI.
        assert latency < 5.0


def test_the_page_is_refused_without_the_token(browser: Any) -> None:
    with serve(APP, "--dashboard", "--admin-token", TOKEN) as srv:
        page = browser.new_page()
        response = page.goto(srv.url + "/__stateroom/")
        assert response is not None and response.status == 401
        assert "admin token" in page.inner_text("body")
        page.screenshot(path=str(ARTIFACTS / "dashboard-refused.png"))
        response = page.goto(srv.url + f"/__stateroom/?token={TOKEN}")
        assert response is not None and response.status == 200
        page.wait_for_selector("#status.on", timeout=10_000)
        assert page.inner_text("#worker") == "Worker dx"
