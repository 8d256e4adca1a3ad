"""The versioned value encoding used for KV values."""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stateroom.storage.encoding import FORMAT_VERSION, MAX_DEPTH, DecodeError, decode, encode

offsets = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
).map(timezone)
datetimes = st.datetimes(timezones=st.none() | offsets | st.just(UTC), allow_imaginary=True)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.binary()
    | datetimes
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types, nan, signed zeros, offsets and key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b) and struct.pack(">d", a) == struct.pack(">d", b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, datetime):
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.utcoffset() == b.utcoffset()
            and a.fold == b.fold
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=200, deadline=None)
@given(values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert data[0] == FORMAT_VERSION
    back = decode(data)
    assert same(back, value)
    assert encode(back) == data  # canonical: equal values, equal bytes


def test_version_byte_is_first_and_checked() -> None:
    assert encode(None) == bytes([FORMAT_VERSION, 0x00])
    assert encode(True)[0] == 1
    with pytest.raises(DecodeError, match="version 2"):
        decode(bytes([2, 0x00]))
    with pytest.raises(DecodeError, match="empty"):
        decode(b"")


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        127,
        128,
        -129,
        2**64,
        -(2**64) - 1,
        10**400,
        float("nan"),
        float("inf"),
        float("-inf"),
        -0.0,
        "",
        "\ud800",  # a lone surrogate survives
        "日本語 🎉",
        b"",
        bytes(range(256)),
        [],
        {},
        {"b": 1, "a": 2},
        [[[[[]]]]],
        datetime(2024, 2, 29, 23, 59, 59, 999999),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-23))),
        datetime(2021, 11, 7, 1, 30, fold=1),
        datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30, microseconds=7))),
    ],
)
def test_edge_values(value: Any) -> None:
    assert same(decode(encode(value)), value)


def test_utc_reads_back_as_timezone_utc() -> None:
    assert decode(encode(datetime(2020, 1, 1, tzinfo=timezone(timedelta(0))))).tzinfo is UTC


def test_lossy_but_documented_conversions() -> None:
    class Color(IntEnum):
        RED = 1

    assert decode(encode((1, "a"))) == [1, "a"]
    assert decode(encode(bytearray(b"xy"))) == b"xy"
    assert decode(encode(memoryview(b"xy"))) == b"xy"
    assert type(decode(encode(Color.RED))) is int
    assert type(decode(encode(OrderedDict(a=1)))) is dict


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ({1, 2}, "set"),
        (date(2020, 1, 1), "date"),
        (Decimal("1.5"), "Decimal"),
        (object(), "object"),
        ([1, {"x": frozenset()}], "frozenset"),
        (complex(1, 2), "complex"),
    ],
)
def test_unsupported_types_name_the_type(value: Any, name: str) -> None:
    with pytest.raises(TypeError, match=f"'{name}'"):
        encode(value)


def test_non_str_dict_keys_are_refused() -> None:
    with pytest.raises(TypeError, match=r"key of type 'int'.*must be str"):
        encode({1: "a"})


def test_self_containing_and_too_deep_values() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        encode(loop)
    deep: list[Any] = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="nested"):
        encode(deep)
    shared = [1]
    assert decode(encode([shared, shared])) == [[1], [1]]  # sharing is not a cycle


@pytest.mark.parametrize(
    "data",
    [
        bytes([1]),  # no item
        bytes([1, 0x00, 0x00]),  # trailing byte
        bytes([1, 0x05, 0x05, 0x61]),  # truncated string
        bytes([1, 0x03, 0x00]),  # zero-length int
        bytes([1, 0x04, 0x00]),  # truncated float
        bytes([1, 0x7F]),  # unknown tag
        bytes([1, 0x05, 0x01, 0xFF]),  # invalid UTF-8
        bytes([1, 0x09, 0, 0, 1, 13, 1, 0, 0, 0, 0, 0, 0, 0]),  # month 13
        bytes([1, 0x06]) + b"\xff" * 10,  # absurd length
        bytes([1]) + bytes([0x07, 0x01]) * (MAX_DEPTH + 2) + bytes([0x00]),  # too deep
    ],
)
def test_malformed_input_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)
