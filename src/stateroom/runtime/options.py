"""Timeouts of the object runtime, in their own (interpreted) module.

Kept out of ``actor.py``, which is compiled with mypyc: the CLI reads the defaults
from the class (``RuntimeOptions.idle_timeout``), and a compiled class holds
descriptors there, not values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stateroom.runtime.input_gate import BLOCK_TIMEOUT
from stateroom.runtime.metrics import RuntimeMetrics


@dataclass
class RuntimeOptions:
    """Timeouts of the object runtime; tests shorten them."""

    # Cloudflare evicts an idle object (no request, socket or task) after 70 to 140 s.
    idle_timeout: float = 70.0
    # blockConcurrencyWhile() callbacks that run longer reset the object.
    block_timeout: float = BLOCK_TIMEOUT
    # An object whose only ties are hibernatable WebSockets leaves memory after this.
    hibernation_timeout: float = 10.0
    # First retry of a failed alarm() after this many seconds, doubling each time.
    alarm_retry_delay: float = 2.0
    # GET /__scheduled?cron=... (and /cdn-cgi/handler/scheduled) runs scheduled() now,
    # as `wrangler dev --test-scheduled` does; on in `stateroom dev`.
    test_scheduled: bool = False
    # A handler holding the event loop longer than this is reported and its object reset
    # (Cloudflare's CPU limit is 30 s); None: no watchdog.
    cpu_limit: float | None = 30.0
    # The event loop held longer than this is logged with the code that held it.
    lag_threshold: float = 1.0
    # What the runtime counts (shared by the versions `stateroom dev` reloads).
    metrics: RuntimeMetrics = field(default_factory=RuntimeMetrics)
