"""The binary encoding of values stored with ``ctx.storage.put()``.

Cloudflare stores any value the structured-clone algorithm accepts. Python has
no structured clone, and ``pickle`` is out of the question (unpickling runs
code, and pickles tie stored data to class paths). This module defines a small,
self-describing, versioned format instead: the bytes in ``_cf_KV.value`` can be
read by any future version of stateroom, or by another language.

Format (version 1)
------------------

``value := VERSION item`` where ``VERSION`` is the single byte ``0x01``. An
``item`` is one tag byte followed by its payload::

    tag   type        payload
    0x00  None        (none)
    0x01  False       (none)
    0x02  True        (none)
    0x03  int         uvarint n, then n bytes: big-endian two's complement (n >= 1)
    0x04  float       8 bytes: IEEE 754 binary64, big-endian (nan and inf kept bit-exact)
    0x05  str         uvarint n, then n bytes of UTF-8 ("surrogatepass": lone
                      surrogates survive the round trip)
    0x06  bytes       uvarint n, then n raw bytes
    0x07  list        uvarint count, then count items
    0x08  dict        uvarint count, then count pairs: (uvarint n, n bytes UTF-8 key, item)
    0x09  datetime    1 flag byte (bit 0: aware, bit 1: fold), year u16, month u8,
                      day u8, hour u8, minute u8, second u8, microsecond u32
                      (all big-endian), then for aware values the UTC offset in
                      microseconds as a signed big-endian int64

``uvarint`` is unsigned LEB128 (7 bits a byte, low group first, high bit =
"more"). The encoder is canonical: equal inputs give equal bytes.

What converts, and what does not
--------------------------------

* ``tuple`` is stored as a list and reads back as ``list``; ``bytearray`` and
  ``memoryview`` read back as ``bytes``; subclasses of ``int``, ``str``,
  ``float``, ``list`` and ``dict`` (an ``IntEnum``, an ``OrderedDict``) read
  back as the base type -- as with JSON.
* ``dict`` keys must be ``str``; any other key type raises ``TypeError`` (a
  JavaScript object has string keys only, and silently turning ``1`` into
  ``"1"`` would make ``d[1]`` fail after a round trip). Key order is kept.
* An aware ``datetime`` keeps its UTC offset, not its zone: a ``ZoneInfo``
  value reads back with a fixed ``timezone`` of the same offset (the same
  instant and the same wall time). Offset zero reads back as ``timezone.utc``.
* Anything else (``set``, ``date``, ``Decimal``, objects) raises ``TypeError``
  naming the type. Containers that contain themselves raise ``ValueError``,
  as does nesting deeper than ``MAX_DEPTH``.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "DecodeError",
    "decode",
    "encode",
]

FORMAT_VERSION: Final = 1
"""The version byte written first by ``encode()``; ``decode()`` rejects others."""

MAX_DEPTH: Final = 256
"""Deepest nesting of lists and dicts accepted, so that decoding (recursive)
can never exhaust Python's stack whatever bytes it is given."""

_NONE: Final = 0x00
_FALSE: Final = 0x01
_TRUE: Final = 0x02
_INT: Final = 0x03
_FLOAT: Final = 0x04
_STR: Final = 0x05
_BYTES: Final = 0x06
_LIST: Final = 0x07
_DICT: Final = 0x08
_DATETIME: Final = 0x09

_F64: Final = struct.Struct(">d")
_DT: Final = struct.Struct(">BHBBBBBI")
_OFFSET: Final = struct.Struct(">q")
_SUPPORTED: Final = "None, bool, int, float, str, bytes, list, tuple, dict (str keys), datetime"


class DecodeError(ValueError):
    """The bytes are not a value in a format version this code understands."""


def encode(value: Any) -> bytes:
    """Encode ``value`` (see the module docstring for what is accepted).

    Raises ``TypeError`` naming the first unsupported type met, and
    ``ValueError`` for self-containing or too deeply nested containers.
    """
    out = bytearray((FORMAT_VERSION,))
    _encode_into(out, value, 0, set())
    return bytes(out)


def _uvarint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _encode_into(out: bytearray, value: Any, depth: int, active: set[int]) -> None:
    # Exact-type dispatch first (the common case), isinstance() for subclasses after.
    if value is None:
        out.append(_NONE)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int):
        raw = int(value).to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
        out.append(_INT)
        _uvarint(out, len(raw))
        out += raw
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        out.append(_STR)
        _uvarint(out, len(raw))
        out += raw
    elif isinstance(value, float):
        out.append(_FLOAT)
        out += _F64.pack(value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out.append(_BYTES)
        _uvarint(out, len(raw))
        out += raw
    elif isinstance(value, (list, tuple)):
        _enter(value, depth, active)
        out.append(_LIST)
        _uvarint(out, len(value))
        for item in value:
            _encode_into(out, item, depth + 1, active)
        active.discard(id(value))
    elif isinstance(value, dict):
        _enter(value, depth, active)
        out.append(_DICT)
        _uvarint(out, len(value))
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"cannot store a dict with a key of type {type(key).__name__!r}: "
                    "dict keys must be str"
                )
            raw = key.encode("utf-8", "surrogatepass")
            _uvarint(out, len(raw))
            out += raw
            _encode_into(out, item, depth + 1, active)
        active.discard(id(value))
    elif isinstance(value, datetime):
        _encode_datetime(out, value)
    else:
        raise TypeError(
            f"cannot store a value of type {type(value).__name__!r}; storage accepts {_SUPPORTED}"
        )


def _enter(container: object, depth: int, active: set[int]) -> None:
    if depth >= MAX_DEPTH:
        raise ValueError(f"cannot store a value nested more than {MAX_DEPTH} levels deep")
    key = id(container)
    if key in active:
        raise ValueError("cannot store a value that contains itself")
    active.add(key)


def _encode_datetime(out: bytearray, value: datetime) -> None:
    offset = value.utcoffset()
    flags = (1 if offset is not None else 0) | (2 if value.fold else 0)
    out.append(_DATETIME)
    out += _DT.pack(
        flags,
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )
    if offset is not None:
        out += _OFFSET.pack(offset // timedelta(microseconds=1))


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode bytes produced by ``encode()``.

    Raises ``DecodeError`` for an unknown version byte, truncated or trailing
    data, or any malformed item, so corrupted storage fails loudly instead of
    returning a wrong value.
    """
    view = memoryview(data)
    if len(view) == 0:
        raise DecodeError("empty value: no format version byte")
    if view[0] != FORMAT_VERSION:
        raise DecodeError(
            f"unsupported value format version {view[0]} (this stateroom reads {FORMAT_VERSION})"
        )
    try:
        value, pos = _decode_item(view, 1, 0)
    except (IndexError, struct.error, UnicodeDecodeError, OverflowError) as exc:
        raise DecodeError(f"malformed stored value: {exc}") from exc
    if pos != len(view):
        raise DecodeError(f"malformed stored value: {len(view) - pos} trailing bytes")
    return value


def _read_uvarint(view: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("malformed stored value: length does not fit in 64 bits")


def _read_bytes(view: memoryview, pos: int) -> tuple[memoryview, int]:
    n, pos = _read_uvarint(view, pos)
    end = pos + n
    if end > len(view):
        raise DecodeError("malformed stored value: truncated")
    return view[pos:end], end


def _decode_item(view: memoryview, pos: int, depth: int) -> tuple[Any, int]:
    tag = view[pos]
    pos += 1
    if tag == _NONE:
        return None, pos
    if tag == _FALSE:
        return False, pos
    if tag == _TRUE:
        return True, pos
    if tag == _INT:
        raw, pos = _read_bytes(view, pos)
        if not raw:
            raise DecodeError("malformed stored value: zero-length int")
        return int.from_bytes(raw, "big", signed=True), pos
    if tag == _FLOAT:
        return _F64.unpack_from(view, pos)[0], pos + 8
    if tag == _STR:
        raw, pos = _read_bytes(view, pos)
        return str(raw, "utf-8", "surrogatepass"), pos
    if tag == _BYTES:
        raw, pos = _read_bytes(view, pos)
        return raw.tobytes(), pos
    if tag == _LIST:
        if depth >= MAX_DEPTH:
            raise DecodeError(f"malformed stored value: nested more than {MAX_DEPTH} levels")
        count, pos = _read_uvarint(view, pos)
        items: list[Any] = []
        for _ in range(count):
            item, pos = _decode_item(view, pos, depth + 1)
            items.append(item)
        return items, pos
    if tag == _DICT:
        if depth >= MAX_DEPTH:
            raise DecodeError(f"malformed stored value: nested more than {MAX_DEPTH} levels")
        count, pos = _read_uvarint(view, pos)
        result: dict[str, Any] = {}
        for _ in range(count):
            raw, pos = _read_bytes(view, pos)
            key = str(raw, "utf-8", "surrogatepass")
            result[key], pos = _decode_item(view, pos, depth + 1)
        return result, pos
    if tag == _DATETIME:
        return _decode_datetime(view, pos)
    raise DecodeError(f"malformed stored value: unknown type tag 0x{tag:02x}")


def _decode_datetime(view: memoryview, pos: int) -> tuple[datetime, int]:
    flags, year, month, day, hour, minute, second, micro = _DT.unpack_from(view, pos)
    pos += _DT.size
    offset_us: int | None = None
    if flags & 1:
        (offset_us,) = _OFFSET.unpack_from(view, pos)
        pos += _OFFSET.size
    try:
        tz: timezone | None = None
        if offset_us is not None:
            tz = UTC if offset_us == 0 else timezone(timedelta(microseconds=offset_us))
        value = datetime(
            year, month, day, hour, minute, second, micro, tzinfo=tz, fold=(flags >> 1) & 1
        )
    except ValueError as exc:
        raise DecodeError(f"malformed stored value: bad datetime: {exc}") from exc
    return value, pos
