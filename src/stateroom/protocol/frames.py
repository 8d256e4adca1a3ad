"""WebSocket frames (RFC 6455 section 5): opcodes, masking, server-side framing.

Server frames are never masked, so building one is a header plus the payload.
Unmasking runs in C (``_unmask.c``); without it, websockets' C helper, and
failing that one big-integer XOR: linear, done in C by CPython, and far faster
than a Python byte loop for every payload size we see.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

FIN: Final = 0x80
RSV1: Final = 0x40
RSV2: Final = 0x20
RSV3: Final = 0x10

# Connection states (RFC 6455 section 4; the WebSocket API's readyState values).
CONNECTING: Final = 0
OPEN: Final = 1
CLOSING: Final = 2
CLOSED: Final = 3

# Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_NO_STATUS: Final = 1005
CLOSE_ABNORMAL: Final = 1006
CLOSE_INVALID_DATA: Final = 1007
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_SERVICE_RESTART: Final = 1012
CLOSE_TRY_AGAIN_LATER: Final = 1013

# Headers of unfragmented, unmasked text frames under 126 bytes, by length: the usual
# server frame (an echo, a chat line) is this header and the payload, nothing to compute.
SMALL_TEXT_HEADERS: Final = [bytes((FIN | OP_TEXT, n)) for n in range(126)]

# A close frame's body is at most 125 bytes: the 2-byte code and the reason.
MAX_CLOSE_REASON: Final = 123

_PACK_MEDIUM: Final = struct.Struct("!BBH").pack
_PACK_LONG: Final = struct.Struct("!BBQ").pack


def valid_wire_close_code(code: int) -> bool:
    """May ``code`` appear in a close frame? (1005, 1006 and 1015 are reserved for APIs.)"""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# Multiplying a 32-bit mask by _REPEAT[n] lays n // 4 + 1 copies side by side (no carries,
# each copy has its own 32 bits); _TRIM[n] cuts the result to n bytes.
_SMALL: Final = 512
_REPEAT: Final = [sum(1 << (32 * i) for i in range((n + 3) // 4)) for n in range(_SMALL)]
_TRIM: Final = [(1 << (8 * n)) - 1 for n in range(_SMALL)]


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


Mask = Callable[[bytes | bytearray | memoryview, bytes | bytearray], bytes]
TextFrame = Callable[[bytes], "str | None"]
_c_mask: Mask | None
_c_text: TextFrame | None
try:
    # Our C helper (_unmask.c): positional-only calls, no argument parsing per frame.
    from stateroom.protocol._unmask import unmask as _c_mask
    from stateroom.protocol._unmask import unmask_text as _c_text
except ImportError:  # a pure-Python install (STATEROOM_PURE_PYTHON=1, or no C compiler)
    _c_text = None
    try:
        # websockets' C helper: about 6x faster than the big-integer XOR on small payloads.
        from websockets.speedups import apply_mask as _c_mask
    except ImportError:  # pragma: no cover - websockets built without its C extension
        _c_mask = None
# Final: compiled callers read it as a C static, not from the module's dict per frame.
apply_mask: Final[Mask] = _apply_mask_py if _c_mask is None else _c_mask


def _unmask_text_py(frame: bytes) -> str | None:
    try:
        return apply_mask(frame[6:], frame[2:6]).decode("utf-8")
    except UnicodeDecodeError:
        return None


# The text of one whole masked frame under 126 bytes whose header the caller checked,
# or None if it is not UTF-8 (the general parser then fails the connection with 1007).
unmask_text: Final[TextFrame] = _unmask_text_py if _c_text is None else _c_text


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
    if len(encoded) > MAX_CLOSE_REASON:
        raise ValueError("close reason must be at most 123 bytes of UTF-8")
    return code.to_bytes(2, "big") + encoded
