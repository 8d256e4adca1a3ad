"""Which modules are compiled with mypyc, and whether this install runs them compiled.

The per-message path (frame parsing, event delivery, sends) is plain typed Python,
compiled to C by mypyc when the package is built (``setup.py``). The same source
runs unchanged as pure Python where no compiler was available, only slower.
Stdlib-only: ``setup.py`` reads ``HOT_MODULES`` from this file before anything is
installed.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

HOT_MODULES = (
    "stateroom.protocol.frames",
    "stateroom.protocol.connection",
    "stateroom.server.websocket",
    "stateroom.runtime.interface",
    "stateroom.api.websockets",
    "stateroom.runtime.actor",
    "stateroom.runtime.input_gate",
    "stateroom.runtime.hibernation",
    "stateroom.runtime.eager",
)


def compiled_modules() -> list[str]:
    """The hot modules this interpreter loaded from a compiled extension."""
    return [
        name
        for name in HOT_MODULES
        if not (importlib.import_module(name).__file__ or "").endswith(".py")
    ]


def stale_modules() -> list[str]:
    """Compiled hot modules whose source changed after the build (an editable install).

    Python imports the extension over the ``.py`` file next to it, so an edit to a
    hot module has no effect until it is rebuilt.
    """
    stale = []
    for name in HOT_MODULES:
        path = importlib.import_module(name).__file__ or ""
        if path.endswith(".py"):
            continue
        source = Path(path).parent / (name.rsplit(".", 1)[1] + ".py")
        if source.exists() and os.stat(source).st_mtime > os.stat(path).st_mtime:
            stale.append(str(source))
    return stale
