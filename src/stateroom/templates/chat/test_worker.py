"""Tests of the chat rooms, with stateroom's pytest plugin (run `pytest` in this folder)."""

import pytest

pytestmark = pytest.mark.stateroom_app(".")  # this folder's wrangler.toml


async def test_everyone_in_the_room_hears_it(stateroom_app):
    ada = await stateroom_app.websocket("/room/lobby?name=ada")
    bob = await stateroom_app.websocket("/room/lobby?name=bob")
    elsewhere = await stateroom_app.websocket("/room/other?name=eve")
    ada.send("hello")
    assert await ada.receive() == "ada: hello"
    assert await bob.receive() == "ada: hello"
    elsewhere.send("anyone?")
    assert await elsewhere.receive() == "eve: anyone?"


async def test_a_joiner_gets_the_history_first(stateroom_app):
    ada = await stateroom_app.websocket("/room/lobby?name=ada")
    ada.send("first")
    assert await ada.receive() == "ada: first"
    late = await stateroom_app.websocket("/room/lobby?name=late")
    assert await late.receive() == "ada: first"
