"""The sans-I/O WebSocket core, driven without sockets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawws import close_frame, frame
from stateroom.protocol.connection import ServerConnection
from stateroom.protocol.frames import (
    _apply_mask_py,
    _unmask_text_py,
    apply_mask,
    frame_header,
    unmask_text,
)
from stateroom.protocol.handshake import accept_key, check_request


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def on_message(self, message: str | bytes) -> None:
        self.events.append(("message", message))

    def on_close_frame(self, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))

    def on_failure(self, code: int, reason: str) -> None:
        self.events.append(("fail", code, reason))


def make(limit: int = 1 << 20) -> tuple[ServerConnection, Recorder, list[bytes]]:
    out: list[bytes] = []
    rec = Recorder()
    return ServerConnection(out.append, rec, max_message_size=limit), rec, out


def test_accept_key_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _check(
    method: str = "GET",
    version: str = "1.1",
    upgrade: str | None = "websocket",
    connection: tuple[str, ...] = ("Upgrade",),
    keys: tuple[str, ...] = (KEY,),
    versions: tuple[str, ...] = ("13",),
) -> int | None:
    rejection = check_request(method, version, upgrade, [*connection], [*keys], [*versions])
    return None if rejection is None else rejection.status


def test_handshake_checks_order() -> None:
    # workerd's three checks, in its order: method, version, key.
    assert _check("POST", keys=(), versions=()) == 400
    assert _check(keys=(), versions=()) == 426
    assert _check(keys=()) == 400
    assert _check() is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connection": ()},
        {"connection": ("keep-alive",)},
        {"connection": ("upgraded",)},
        {"upgrade": None},
        {"upgrade": "h2c"},
        {"keys": (KEY, KEY)},
        {"keys": ("abc",)},
        {"keys": ("dGhlIHNhbXBsZSBub25jZQ",)},  # no padding
        {"keys": ("dGhlIHNhbXBsZSBub25jZSE=",)},  # 17 bytes
        {"keys": ("dGhlIHNhbXBsZSBub25jZ!==",)},  # not base64
        {"versions": ("13", "13")},
        {"version": "1.0"},
    ],
)
def test_handshake_refused(kwargs: dict[str, Any]) -> None:
    assert _check(**kwargs) in (400, 426)


@pytest.mark.parametrize(
    "connection", [("Upgrade",), ("keep-alive, Upgrade",), ("upgrade",), ("x", "UPGRADE")]
)
def test_handshake_connection_token(connection: tuple[str, ...]) -> None:
    assert _check(connection=connection) is None


@given(st.binary(max_size=1100), st.binary(min_size=4, max_size=4))
def test_mask_roundtrip(data: bytes, mask: bytes) -> None:
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    for impl in (apply_mask, _apply_mask_py):  # the C helper and the fallback agree
        masked = impl(data, mask)
        assert masked == expected
        assert impl(masked, mask) == data


@given(st.binary(max_size=1100), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_mask_any_buffer_and_offset(data: bytes, mask: bytes, skip: int) -> None:
    # The C helper XORs eight bytes at a time: every length and alignment must agree.
    expected = _apply_mask_py(data[skip:], mask)
    assert apply_mask(memoryview(data)[skip:], mask) == expected
    assert apply_mask(bytearray(data[skip:]), bytearray(mask)) == expected


def test_mask_refuses_a_wrong_mask() -> None:
    with pytest.raises((ValueError, TypeError)):
        apply_mask(b"data", b"abc")


@given(st.binary(max_size=125), st.binary(min_size=4, max_size=4))
def test_unmask_text_is_the_payload_as_utf8_or_none(payload: bytes, mask: bytes) -> None:
    frame = bytes((0x81, 0x80 | len(payload))) + mask + _apply_mask_py(payload, mask)
    try:
        expected: str | None = payload.decode("utf-8")
    except UnicodeDecodeError:
        expected = None  # the general parser fails the connection with 1007
    for impl in (unmask_text, _unmask_text_py):  # the C helper and the fallback agree
        assert impl(frame) == expected


@given(st.text(max_size=40), st.binary(min_size=4, max_size=4))
def test_unmask_text_of_any_text(text: str, mask: bytes) -> None:
    payload = text.encode()[:125]
    frame = bytes((0x81, 0x80 | len(payload))) + mask + _apply_mask_py(payload, mask)
    assert unmask_text(frame) == _unmask_text_py(frame)


@given(st.lists(st.text(max_size=200), max_size=10), st.integers(min_value=1, max_value=50))
def test_any_split_of_the_stream_gives_the_same_messages(texts: list[str], chunk: int) -> None:
    stream = b"".join(frame(0x1, t.encode()) for t in texts)
    conn, rec, _ = make()
    for i in range(0, len(stream), chunk):
        conn.receive_data(stream[i : i + chunk])
    assert rec.events == [("message", t) for t in texts]


def test_utf8_split_across_fragments_is_valid() -> None:
    conn, rec, _ = make()
    snowman = "☃".encode()
    conn.receive_data(frame(0x1, snowman[:1], fin=False) + frame(0x0, snowman[1:]))
    assert rec.events == [("message", "☃")]


def test_invalid_utf8_fails_fast_in_first_fragment() -> None:
    conn, rec, out = make()
    conn.receive_data(frame(0x1, b"\xff", fin=False))
    assert rec.events == [("fail", 1007, "Invalid UTF-8 in text message")]
    assert out == [frame_header(0x88, 31) + b"\x03\xefInvalid UTF-8 in text message"]


def test_ping_answered_with_pong() -> None:
    conn, _, out = make()
    conn.receive_data(frame(0x9, b"abc"))
    assert out == [b"\x8a\x03abc"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x9, b"x" * 126), 1002),
        (close_frame(999), 1002),
        (frame(0x8, b"\x03"), 1002),
        (close_frame(1000, b"\xff"), 1007),
        (frame(0x1, b"x", rsv=0x40), 1002),
        (frame(0x2, b"", length=1 << 63)[:14], 1002),
        (frame(0x2, b"", length=(1 << 20) + 1)[:14], 1009),
    ],
)
def test_failures(data: bytes, code: int) -> None:
    conn, rec, _ = make()
    conn.receive_data(data)
    assert rec.events[0][:2] == ("fail", code)


def test_close_handshake_states() -> None:
    conn, rec, out = make()
    conn.receive_data(close_frame(1000, b"bye") + frame(0x1, b"ignored"))
    assert rec.events == [("close", 1000, "bye")]
    conn.send_close(1000, "ok")
    assert out == [b"\x88\x04\x03\xe8ok"]
    conn.send_text("dropped after close")
    assert len(out) == 1


def test_large_frame_buffered_without_quadratic_copies() -> None:
    conn, rec, _ = make(limit=8 << 20)
    data = frame(0x2, b"z" * (4 << 20))
    for i in range(0, len(data), 65536):
        conn.receive_data(data[i : i + 65536])
    assert rec.events == [("message", b"z" * (4 << 20))]


@given(
    st.text(min_size=1, max_size=3000),
    st.integers(min_value=1, max_value=700),
    st.text(max_size=20),
)
def test_streamed_text_frame_any_split(text: str, chunk: int, after: str) -> None:
    # A text frame that arrives over several reads is unmasked and decoded as it
    # arrives (multi-byte characters split across reads), then the next frame follows.
    data = frame(0x1, text.encode()) + frame(0x1, after.encode())
    conn, rec, _ = make()
    for i in range(0, len(data), chunk):
        conn.receive_data(data[i : i + chunk])
    assert rec.events == [("message", text), ("message", after)]


def test_streamed_text_frame_fails_fast_on_invalid_utf8() -> None:
    conn, rec, out = make()
    data = frame(0x1, b"a" * 1000 + b"\xff" + b"b" * 1000)
    conn.receive_data(data[:500])
    assert rec.events == []
    conn.receive_data(data[500:1100])  # the bad byte is here; the frame is not finished
    assert rec.events == [("fail", 1007, "Invalid UTF-8 in text message")]
    assert out == [frame_header(0x88, 31) + b"\x03\xefInvalid UTF-8 in text message"]
    conn.receive_data(data[1100:])  # the rest of the frame is ignored
    assert len(rec.events) == 1


def test_streamed_text_frame_truncated_character_at_the_end_fails() -> None:
    conn, rec, _ = make()
    data = frame(0x1, b"x" * 300 + "☃".encode()[:2])
    conn.receive_data(data[:100])
    conn.receive_data(data[100:])
    assert rec.events == [("fail", 1007, "Invalid UTF-8 in text message")]


def test_large_text_frame_streamed() -> None:
    conn, rec, _ = make(limit=8 << 20)
    text = "é" * (2 << 20)
    data = frame(0x1, text.encode())
    for i in range(0, len(data), 65536):
        conn.receive_data(data[i : i + 65536])
    assert rec.events == [("message", text)]


def test_fragmented_compressed_message_counted_once() -> None:
    import zlib

    from stateroom.protocol.deflate import negotiate

    deflate, _ = negotiate("permessage-deflate")
    out: list[bytes] = []
    rec = Recorder()
    conn = ServerConnection(out.append, rec, max_message_size=1000, deflate=deflate)
    message = bytes(range(256)) * 3 + b"x" * 132  # 900 bytes, barely compressible
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    third = len(data) // 3
    parts = [data[:third], data[third : 2 * third], data[2 * third :]]
    conn.receive_data(
        frame(0x2, parts[0], fin=False, rsv=0x40)
        + frame(0x0, parts[1], fin=False)
        + frame(0x0, parts[2])
    )
    assert rec.events == [("message", message)]
