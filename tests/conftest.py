from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import serve as _serve


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``with serve("examples/websocket-server", "--idle-timeout", "0.2") as srv:``."""
    return _serve
