"""``stateroom init``: each template makes a project whose own tests pass, as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stateroom.scaffold import TEMPLATES


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_new_project_runs_its_own_tests(tmp_path: Path, template: str) -> None:
    made = _run("-m", "stateroom", "init", "app", "--template", template, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    app = tmp_path / "app"
    assert {p.name for p in app.iterdir()} >= {"wrangler.toml", "worker.py", "test_worker.py"}
    assert f"stateroom dev {Path('app')}" in made.stderr  # the log
    # The project's tests, through the installed pytest plugin, in the new folder alone.
    tests = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=app)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "failed" not in tests.stdout


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "mine.py").write_text("keep me")
    made = _run("-m", "stateroom", "init", "app", cwd=tmp_path)
    assert made.returncode == 2 and "is not empty" in made.stderr
    assert (tmp_path / "app" / "mine.py").read_text() == "keep me"


def test_the_websocket_server_template_is_the_example() -> None:
    """The template ships inside the package (examples/ does not): the two copies of
    Cloudflare's example must not drift apart."""
    root = Path(__file__).resolve().parent.parent
    template = root / "src" / "stateroom" / "templates" / "websocket-server"
    example = root / "examples" / "websocket-server"
    for name in ("worker.py", "wrangler.toml"):
        assert (template / name).read_bytes() == (example / name).read_bytes(), name
