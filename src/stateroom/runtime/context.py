"""Which actor the running code belongs to.

Set while an object's event runs, so that API objects created by user code
(a ``WebSocketPair``, a storage call) find their object without being told.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stateroom.runtime.actor import ActorHost

current_host: ContextVar[ActorHost | None] = ContextVar("stateroom_current_host", default=None)
