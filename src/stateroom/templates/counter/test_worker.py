"""Tests of the counter, with stateroom's pytest plugin (run `pytest` in this folder)."""

import pytest

from stateroom.testing import list_object_ids, run_in_durable_object

pytestmark = pytest.mark.stateroom_app(".")  # this folder's wrangler.toml


async def test_counts_per_name(stateroom_app):
    for expected in ("1", "2"):
        response = await stateroom_app.fetch("/apples", method="POST")
        assert await response.text() == expected
    assert await (await stateroom_app.fetch("/pears")).text() == "0"


async def test_the_count_is_in_storage(stateroom_app):
    await stateroom_app.fetch("/apples", method="POST")
    stub = stateroom_app.env.COUNTERS.getByName("apples")
    assert await run_in_durable_object(stub, lambda obj, ctx: ctx.storage.get("count")) == 1
    assert list_object_ids(stateroom_app.env.COUNTERS) == [stub.id]
