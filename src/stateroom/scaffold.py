"""``stateroom init``: a new project from a template, ready to run and to test.

Each template (``templates/<name>/``) is a working Worker: ``wrangler.toml``, its code and
a ``test_worker.py`` that uses stateroom's pytest plugin, so ``stateroom dev`` serves it
and ``pytest`` passes in the new folder as it is.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

__all__ = ["TEMPLATES", "init_project"]

logger = logging.getLogger("stateroom.init")

_ROOT = Path(__file__).resolve().parent / "templates"
TEMPLATES = ("websocket-server", "counter", "chat")


class ProjectExistsError(Exception):
    """The target folder already holds files; ``init`` never overwrites."""


def init_project(directory: str | Path, template: str = "websocket-server") -> list[Path]:
    """Copy ``template`` into ``directory`` (created, or empty); returns the files made."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}: choose one of {', '.join(TEMPLATES)}")
    target = Path(directory)
    if target.exists() and any(target.iterdir()):
        raise ProjectExistsError(
            f"{target} is not empty: give `stateroom init` a new or empty folder"
        )
    target.mkdir(parents=True, exist_ok=True)
    made = []
    for source in sorted((_ROOT / template).iterdir()):
        if source.is_file() and source.suffix in (".py", ".toml", ".md"):
            shutil.copyfile(source, target / source.name)
            made.append(target / source.name)
    return made
