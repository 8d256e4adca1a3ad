"""Tests of the WebSocket server, with stateroom's pytest plugin (run `pytest` here)."""

import pytest

pytestmark = pytest.mark.stateroom_app(".")  # this folder's wrangler.toml


async def test_echo_with_the_prefix(stateroom_app):
    ws = await stateroom_app.websocket("/websocket")
    ws.send("hello")
    assert await ws.receive() == "[Durable Object]: hello"


async def test_counts_connections(stateroom_app):
    await stateroom_app.websocket("/websocket")
    text = await (await stateroom_app.fetch("/getCurrentConnections")).text()
    assert text == "There is 1 WebSocket client connected to this Durable Object instance."
