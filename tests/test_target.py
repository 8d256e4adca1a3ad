"""request.url from the request target and Host (protocol/target.py): pure unit tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stateroom.protocol.target import TargetError, request_url, valid_host


@pytest.mark.parametrize(
    ("hosts", "target", "url"),
    [
        (["x"], "/", "http://x/"),
        (["X.Example:8080"], "/a?b=c", "http://x.example:8080/a?b=c"),
        (["[::1]:80"], "/p", "http://[::1]:80/p"),
        (["127.0.0.1"], "/p", "http://127.0.0.1/p"),
        (["h_x-y~z"], "/", "http://h_x-y~z/"),
        (["%41"], "/", "http://%41/"),
        # Paths reach the app as sent: no dot-segment normalisation, in any spelling.
        (["h"], "/a/../x", "http://h/a/../x"),
        (["h"], "/public/%2e%2e/admin", "http://h/public/%2e%2e/admin"),
        (["h"], "/public/%2E./admin", "http://h/public/%2E./admin"),
        (["h"], "/.%2e/x", "http://h/.%2e/x"),
        (["h"], "/%2e/x", "http://h/%2e/x"),
        (["h"], "//x/../y", "http://h//x/../y"),
        # The fragment is dropped; a '?' or '#' in the query stays the query's.
        (["h"], "/websocket#frag", "http://h/websocket"),
        (["h"], "/a?b/../c", "http://h/a?b/../c"),
        # Absolute form: its authority replaces Host (RFC 9112 3.2.2).
        (["h"], "http://a.example/url", "http://a.example/url"),
        (["h"], "HTTP://A.example:81", "http://a.example:81/"),
        (["h"], "https://a.example?q", "http://a.example/?q"),
    ],
)
def test_request_url(hosts: list[str], target: str, url: str) -> None:
    assert request_url("http", hosts, target) == url


@pytest.mark.parametrize(
    "hosts",
    [
        [],
        ["a", "b"],
        ["a", "a"],
        [""],
        ["h/admin?"],
        ["h#"],
        ["h?x"],
        ["a b"],
        ["a, b"],
        ["a@b"],
        ["h\\x"],
        ["a:b"],
        [":80"],
        ["%4"],
        ["[::1"],
        ["h\x00"],
        ["h\t"],
    ],
)
def test_bad_host_refused(hosts: list[str]) -> None:
    with pytest.raises(TargetError) as info:
        request_url("http", hosts, "/")
    assert info.value.host


@pytest.mark.parametrize(
    "target",
    [
        "*",
        "a.example:443",  # CONNECT's authority form
        "http://user@a.example/",
        "http://a b/",
        "ftp://a.example/",
        "http:/a",
        "http://[::1/",
    ],
)
def test_bad_target_refused(target: str) -> None:
    with pytest.raises(TargetError) as info:
        request_url("http", ["h"], target)
    assert not info.value.host


@given(st.text(max_size=30))
def test_a_valid_host_cannot_reach_into_the_path(host: str) -> None:
    """Whatever Host passes validation, the URL's path is exactly the target."""
    if not valid_host(host):
        return
    url = request_url("http", [host], "/p")
    assert url == f"http://{host.lower()}/p"
    assert not any(c in host for c in "/?#@\\ ")
