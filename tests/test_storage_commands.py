"""``stateroom storage`` against a running server's data, then export and import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, fetch, serve

APP = ROOT / "tests" / "apps" / "storage"


def storage(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "stateroom", "storage", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_read_a_live_servers_objects_by_name_without_a_lock(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    where = ("-C", str(APP), "--persist-to", data, "--class", "Store")
    with serve(APP, "--persist-to", data) as srv:
        assert fetch(srv, "/store/put?obj=alice&k=greeting&v=hello") == (200, "ok")
        assert fetch(srv, "/store/incr?obj=alice")[0] == 200
        assert fetch(srv, "/store/sql?obj=bob&name=first")[0] == 200
        assert fetch(srv, "/store/alarm-set?obj=bob&ms=3600000") == (200, "set")
        # The server runs, holds the files and keeps writing: no lock error, a snapshot.
        listed = {row["name"]: row for row in lines(storage("ls", *where))}
        assert set(listed) == {"alice", "bob"}
        assert listed["alice"]["keys"] == 2 and listed["bob"]["alarm"] is not None
        got = lines(storage("get", "alice", *where))
        assert got == [{"key": "greeting", "value": "hello"}, {"key": "n", "value": 1}]
        assert lines(storage("get", "alice", "n", *where)) == [{"key": "n", "value": 1}]
        rows = lines(storage("sql", "bob", "SELECT id, name FROM t", *where))
        assert rows == [{"id": 1, "name": "first"}]
        # Read-only: a write is refused, and the object is unchanged.
        refused = storage("sql", "bob", "DELETE FROM t", *where, check=False)
        assert refused.returncode == 2 and "readonly" in refused.stderr.lower()
        missing = storage("get", "alice", "nope", *where, check=False)
        assert missing.returncode == 2 and "no key 'nope'" in missing.stderr
        # By id, too (what `ls` shows).
        alice_id = str(listed["alice"]["id"])
        assert lines(storage("get", alice_id, "greeting", *where))[0]["value"] == "hello"
        storage("export", "--to", str(tmp_path / "backup"), *where)
        assert fetch(srv, "/store/put?obj=alice&k=greeting&v=changed") == (200, "ok")
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert sorted(o["name"] for o in manifest["objects"]) == ["alice", "bob"]

    # Back into a fresh data folder; the server there sees the exported state.
    fresh = str(tmp_path / "fresh")
    storage("import", "--from", str(tmp_path / "backup"), "-C", str(APP), "--persist-to", fresh)
    with serve(APP, "--persist-to", fresh) as srv:
        assert fetch(srv, "/store/get?obj=alice&k=greeting") == (200, '"hello"')
        assert fetch(srv, "/store/sql?obj=bob&name=second") == (
            200,
            '[{"id": 1, "name": "first"}, {"id": 2, "name": "second"}]',
        )
    # Import refuses to overwrite, unless asked.
    again = storage(
        "import",
        "--from",
        str(tmp_path / "backup"),
        "-C",
        str(APP),
        "--persist-to",
        fresh,
        check=False,
    )
    assert again.returncode == 2 and "--replace" in again.stderr


def test_which_class_must_be_said_when_there_are_several(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with serve(APP, "--persist-to", data) as srv:
        assert fetch(srv, "/store/put?obj=a&k=k&v=v") == (200, "ok")
    done = storage("get", "a", "-C", str(APP), "--persist-to", data, check=False)
    assert done.returncode == 2 and "--class" in done.stderr and "Store" in done.stderr


@pytest.mark.parametrize("ref", ["nobody", "0" * 64])
def test_an_object_without_data_is_a_clear_error(tmp_path: Path, ref: str) -> None:
    data = str(tmp_path / "data")
    done = storage(
        "get", ref, "-C", str(APP), "--persist-to", data, "--class", "Store", check=False
    )
    assert done.returncode == 2 and "has no stored data" in done.stderr
