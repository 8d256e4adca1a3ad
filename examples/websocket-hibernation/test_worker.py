"""Testing this Worker with stateroom's pytest plugin: run ``pytest`` in this folder.

The plugin comes with stateroom (nothing to enable). Each test loads the Worker afresh,
with its own in-memory storage, and runs on an event loop whose clock it controls.
"""

import asyncio

import pytest
import websockets

from stateroom.runtime.options import RuntimeOptions
from stateroom.testing import list_object_ids, run_in_durable_object

pytestmark = pytest.mark.stateroom_app(".")  # this folder's wrangler.toml


@pytest.fixture
def stateroom_options():
    # Hibernate after 5 s without events (the clock fixture makes that instant).
    return RuntimeOptions(hibernation_timeout=5.0)


async def test_echo(stateroom_app):
    ws = await stateroom_app.websocket("/websocket")
    ws.send("hello")
    assert await ws.receive() == "[Durable Object]: hello"


async def test_sockets_survive_hibernation(stateroom_app, stateroom_clock):
    ws = await stateroom_app.websocket("/websocket")
    stub = stateroom_app.env.WEBSOCKET_HIBERNATION_SERVER.getByName("foo")
    await run_in_durable_object(stub, lambda instance, ctx: setattr(instance, "seen", True))

    await stateroom_clock.advance(6)  # past the hibernation timeout: the instance is dropped

    ws.send("still here")
    assert await ws.receive() == "[Durable Object]: still here"
    # A new instance answered, and it sees the socket the old one accepted.
    assert not await run_in_durable_object(stub, lambda instance, ctx: hasattr(instance, "seen"))
    assert await run_in_durable_object(stub, lambda instance, ctx: len(ctx.getWebSockets())) == 1
    # Storage is per test: this object never wrote anything.
    assert list_object_ids(stateroom_app.env.WEBSOCKET_HIBERNATION_SERVER) == []


async def test_over_a_real_socket(stateroom_server):
    async with websockets.connect(stateroom_server.ws_url + "/websocket") as ws:
        await ws.send("over TCP")
        assert await asyncio.wait_for(ws.recv(), 5) == "[Durable Object]: over TCP"
