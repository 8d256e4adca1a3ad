"""WebSocket frames (RFC 6455 section 5): opcodes, masking, server-side framing.

Server frames are never masked, so building one is a header plus the payload.
Unmasking uses one big-integer XOR: linear, done in C by CPython, and far
faster than a Python byte loop for every payload size we see.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10

# Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013

_PACK_MEDIUM = struct.Struct("!BBH").pack
_PACK_LONG = struct.Struct("!BBQ").pack


def valid_wire_close_code(code: int) -> bool:
    """May ``code`` appear in a close frame? (1005, 1006 and 1015 are reserved for APIs.)"""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# Multiplying a 32-bit mask by _REPEAT[n] lays n // 4 + 1 copies side by side (no carries,
# each copy has its own 32 bits); _TRIM[n] cuts the result to n bytes.
_SMALL = 512
_REPEAT = [sum(1 << (32 * i) for i in range((n + 3) // 4)) for n in range(_SMALL)]
_TRIM = [(1 << (8 * n)) - 1 for n in range(_SMALL)]


def _apply_mask_py(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``mask`` (masking is its own inverse)."""
    n = len(data)
    if not n:
        return b""
    if n < _SMALL:
        key = int.from_bytes(mask, "little") * _REPEAT[n] & _TRIM[n]
    else:
        key = int.from_bytes((bytes(mask) * ((n >> 2) + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


apply_mask: Callable[[bytes | bytearray | memoryview, bytes | bytearray], bytes]
try:
    # The C helper of the websockets library: SIMD-wide XOR, about 6x faster than the
    # big-integer XOR on small payloads and far faster on large ones.
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    apply_mask = _apply_mask_py


def frame_header(first_byte: int, length: int) -> bytes:
    """Header of an unmasked frame; ``first_byte`` carries FIN, RSV bits and the opcode."""
    if length < 126:
        return bytes((first_byte, length))
    if length < 65536:
        return _PACK_MEDIUM(first_byte, 126, length)
    return _PACK_LONG(first_byte, 127, length)


def close_payload(code: int | None, reason: str = "") -> bytes:
    """Body of a close frame: empty without a code, else code + UTF-8 reason (<= 123 bytes)."""
    if code is None:
        return b""
    encoded = reason.encode("utf-8")
    if len(encoded) > 123:
        raise ValueError("close reason must be at most 123 bytes of UTF-8")
    return code.to_bytes(2, "big") + encoded
