"""``stateroom dev`` keeps running through a broken save, and reloads once per save."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from support import ROOT, RunningServer, fetch, serve

APP = ROOT / "tests" / "apps" / "dx"
FAST = ("--reload-poll", "0.05", "--reload-debounce", "0.3")


def copy_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns(".stateroom", "__pycache__"))
    return app


def reloads(srv: RunningServer) -> int:
    return srv.output().count("reloaded (")


def test_an_import_error_is_every_answer_until_the_file_is_fixed(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    worker = app / "worker.py"
    good = worker.read_text()
    with serve(app, *FAST, command="dev") as srv:
        assert fetch(srv, "/room/a/ping") == (200, "pong")
        worker.write_text(good.replace("class Room(DurableObject):", "class Room(DurableObject)"))
        srv.wait_for_log("the Worker does not load")
        for path in ("/room/a/ping", "/anything"):
            status, body = fetch(srv, path)
            assert status == 500
            assert "the Worker does not load" in body
            assert "SyntaxError" in body and "worker.py" in body
        worker.write_text(good)
        srv.wait_for_log(r"reloaded \(")
        assert fetch(srv, "/room/a/ping") == (200, "pong")
        assert srv.proc.poll() is None


def test_a_config_error_at_start_does_not_stop_dev(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    config = app / "wrangler.toml"
    good = config.read_text()
    config.write_text(good.replace('class_name = "Room"', 'class_name = "Missing"'))
    with serve(app, *FAST, command="dev") as srv:
        status, body = fetch(srv, "/room/a/ping")
        assert status == 500
        assert "class 'Missing'" in body or "Missing" in body, body
        assert "Traceback" not in body  # a configuration error is its message alone
        config.write_text(good)
        srv.wait_for_log(r"reloaded \(")
        assert fetch(srv, "/room/a/ping") == (200, "pong")


def test_serve_still_exits_on_a_config_error(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    (app / "wrangler.toml").write_text('name = "x"\nmain = "nowhere.py"\n')
    try:
        with serve(app):
            raise AssertionError("serve started with a broken configuration")
    except RuntimeError as exc:
        assert "did not start" in str(exc)


def test_one_save_reloads_once(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    worker = app / "worker.py"
    source = worker.read_text()
    with serve(app, *FAST, command="dev") as srv:
        # One save made of several writes spread over more than one poll (an editor that
        # truncates and writes, a formatter run on save, a touch), under the debounce.
        with open(worker, "w") as f:
            f.write(source[:100])
            f.flush()
            time.sleep(0.12)  # the save in progress (what is waited for is the log below)
            f.write(source[100:].replace('"pong"', '"pong 2"'))
            f.flush()
        time.sleep(0.12)
        os.utime(worker)
        srv.wait_for_log(r"reloaded \(")
        assert fetch(srv, "/room/a/ping") == (200, "pong 2")
        # A second save: its reload is the second one (the first save made exactly one).
        worker.write_text(source.replace('"pong"', '"pong 3"'))
        srv.wait_for_log(r"reloaded \((?:.|\n)*reloaded \(")
        assert fetch(srv, "/room/a/ping") == (200, "pong 3")
        assert reloads(srv) == 2, srv.output()
        assert "does not load" not in srv.output(), (
            srv.output()
        )  # the half-written file was never loaded
