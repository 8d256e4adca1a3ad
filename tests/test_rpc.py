"""RPC over real sockets (tests/apps/rpc): arguments and results cross as copies (Cloudflare's
structured clone), what cannot cross is refused with DataCloneError, properties read and
promises pipeline through a stub, and stubs and RpcTargets travel by reference."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from support import RunningServer, fetch, serve


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with serve("tests/apps/rpc") as server:
        yield server


def scenario(srv: RunningServer, name: str) -> Any:
    status, body = fetch(srv, f"/{name}")
    assert status == 200, body
    return json.loads(body)


def test_arguments_and_results_are_copies(srv: RunningServer) -> None:
    seen = scenario(srv, "copies")
    assert seen["caller_sees"] == {"caller": True, "items": [1]}  # the callee's change stayed
    assert seen["returned"] == {"caller": True, "items": [1], "callee": True}
    assert seen["object_kept"] == {"n": 1}  # the caller's change to the result stayed too
    assert seen["shared_kept"] is True  # shared references survive the copy


def test_what_cannot_cross_is_refused(srv: RunningServer) -> None:
    seen = scenario(srv, "refused")
    for side in ("argument", "result"):
        assert seen[side].startswith('Could not serialize object of type "lock".'), seen
    assert seen["value_after"] == 0  # the refused call never ran


def test_properties_read_through_a_stub(srv: RunningServer) -> None:
    assert scenario(srv, "properties") == {"value": 5, "missing": None}


def test_promise_pipelining_and_rpc_targets(srv: RunningServer) -> None:
    seen = scenario(srv, "pipelining")
    assert seen == {"first": 1, "second": 3, "value": 3, "twice": [103, 103]}


def test_stubs_cross_by_reference(srv: RunningServer) -> None:
    assert scenario(srv, "stubs") == {"asked": 10, "other_value": 10}


def test_an_unawaited_call_still_runs(srv: RunningServer) -> None:
    assert scenario(srv, "unawaited") == {"value": 5}


def test_a_callback_runs_in_its_owners_event_order(srv: RunningServer) -> None:
    """A callback object a passed to object b runs in a, as one of a's events: while a's
    input gate is closed (blockConcurrencyWhile), b's call of it waits."""
    seen = scenario(srv, "owner-order")
    assert seen["before_release"] == []
    assert seen["notes"] == ["hold ended", "note x ran in owner-a"]
    assert seen["fired"] == 2


def test_errors_carry_cloudflares_properties_and_abort_resets(srv: RunningServer) -> None:
    seen = scenario(srv, "errors")
    assert seen["fail"] == ["ValueError", "the object's own error", True, False, False]
    assert seen["quit"] == ["DurableObjectAbort", "bye", True, False, False]
    assert seen["value_after_abort"] == 0
