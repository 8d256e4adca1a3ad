"""The WebSocket surface over real sockets (tests/apps/sockets): ``ws.protocol``,
``ws.extensions`` and ``ws.url`` as Cloudflare's WebSocket API has them, and outbound
``fetch()`` and WebSockets from inside an object, ordered by its gates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from support import RunningServer, serve


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with serve("tests/apps/sockets", "--in-memory") as server:
        yield server


async def _props(srv: RunningServer, path: str, **options: Any) -> tuple[dict[str, Any], Any]:
    async with websockets.connect(f"{srv.ws_url}{path}", **options) as ws:
        await ws.send("props")
        return json.loads(await ws.recv()), ws.subprotocol


@pytest.mark.parametrize("path", ["/ws", "/ws-hib"])
def test_protocol_extensions_and_url(srv: RunningServer, path: str) -> None:
    seen, chosen = asyncio.run(_props(srv, path, subprotocols=["chat", "superchat"]))
    assert chosen == "superchat"  # the app's choice went out on the 101
    assert seen["now"]["protocol"] == "superchat"
    assert seen["now"]["extensions"].startswith("permessage-deflate")
    assert seen["now"]["url"] is None  # as on Cloudflare: only outgoing sockets have one
    # Before the 101 left (in fetch), nothing was agreed yet: null, as on Cloudflare.
    assert seen["before"] == {"protocol": None, "extensions": None, "url": None}


def test_none_agreed_reads_empty(srv: RunningServer) -> None:
    seen, chosen = asyncio.run(_props(srv, "/ws", compression=None))
    assert chosen is None
    assert seen["now"] == {"protocol": "", "extensions": "", "url": None}
