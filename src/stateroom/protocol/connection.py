"""The server side of a WebSocket connection as a sans-I/O state machine.

``receive_data()`` takes bytes from the network and calls the handler for each
complete message, close frame or protocol failure; everything to send goes to
the ``write`` callable. No sockets, no event loop: the asyncio layer in
``stateroom.server`` is a thin shell around it, and tests drive it directly.

Checks done here, on the hot path, so no application has to: client frames
must be masked; reserved bits and opcodes are refused; control frames must be
short and unfragmented; text must be valid UTF-8 across fragments; the message
size limit is enforced from the frame header, before any payload is buffered.
"""

from __future__ import annotations

import codecs
import logging
from typing import Final, Protocol

from stateroom.protocol.deflate import DecompressionError, MessageTooBig, PerMessageDeflate
from stateroom.protocol.frames import (
    CLOSE_INVALID_DATA,
    CLOSE_NO_STATUS,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    FIN,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    apply_mask,
    close_payload,
    frame_header,
    unmask_text,
    valid_wire_close_code,
)
from stateroom.protocol.frames import CLOSED as CLOSED
from stateroom.protocol.frames import CLOSING as CLOSING
from stateroom.protocol.frames import OPEN as OPEN

logger = logging.getLogger("stateroom.protocol")

# First byte of an unfragmented, uncompressed frame (RSV bits are checked before).
FIN_NO_RSV: Final = FIN | RSV1

# Payloads at least this big are written separately from their header, not copied.
_ZERO_COPY: Final = 16 * 1024


class WriteFn(Protocol):
    def __call__(self, data: bytes, /) -> None: ...


class ConnectionHandler(Protocol):
    """What the I/O layer does with the events the protocol produces."""

    def on_message(self, message: str | bytes) -> None: ...

    def on_close_frame(self, code: int, reason: str) -> None:
        """The peer sent a close frame (``code`` 1005 if it had no status)."""

    def on_failure(self, code: int, reason: str) -> None:
        """The connection failed; a close frame with ``code`` has been queued."""


# workerd's reason for RSV1 without permessage-deflate is 127 bytes ("... negotiated for this
# connection."), which makes a close frame over the 125 bytes RFC 6455 5.5 allows (clients
# then fail the connection instead of reading the close): its first 123 bytes, the most a
# close reason can hold.
RSV1_NOT_NEGOTIATED: Final = (
    "Received a WebSocket frame whose compression bit was set, but the compression "
    "extension was not negotiated for this connection."
)[:123]


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Peek:
    """Validation state of a text frame whose payload has partly arrived."""

    __slots__ = ("checked", "decoder", "header", "mask")

    def __init__(self, header: int, mask: bytes, decoder: codecs.IncrementalDecoder) -> None:
        self.header = header
        self.mask = mask
        self.decoder = decoder
        self.checked = 0


class _Stream:
    """An unfragmented, uncompressed text frame whose payload is still arriving.

    Its payload is unmasked and decoded as it arrives and never buffered raw, so a
    large message costs one pass of each, and invalid UTF-8 fails the connection as
    soon as it is on the wire.
    """

    __slots__ = ("decoder", "mask", "offset", "parts", "remaining")

    def __init__(self, mask: bytes, remaining: int) -> None:
        self.mask = mask
        self.remaining = remaining
        self.offset = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.parts: list[str] = []


class ServerConnection:
    """One server-side WebSocket connection's framing, validation and close handshake."""

    __slots__ = (
        "_buf",
        "_frag_compressed",
        "_frag_opcode",
        "_frag_parts",
        "_frag_size",
        "_handler",
        "_need",
        "_peek",
        "_stream",
        "_utf8",
        "close_received",
        "close_sent",
        "deflate",
        "max_message_size",
        "state",
        "write",
    )

    def __init__(
        self,
        write: WriteFn,
        handler: ConnectionHandler,
        *,
        max_message_size: int,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self.write = write
        self.deflate = deflate
        self._frag_compressed = False
        self._peek: _Peek | None = None
        self._stream: _Stream | None = None
        self._handler = handler
        self.max_message_size = max_message_size
        self.state = OPEN
        self.close_sent = False
        self.close_received = False
        self._buf = bytearray()
        self._need = 2
        self._frag_opcode = 0
        self._frag_parts: list[bytes] = []
        self._frag_size = 0
        self._utf8: codecs.IncrementalDecoder | None = None

    # -- input ----------------------------------------------------------------

    def small_text(self, data: bytes) -> str | None:
        """The text of ``data`` if it is the most common read by far; else None.

        That read is exactly one whole, masked, unfragmented text frame under 126 bytes,
        arriving while nothing is buffered or in progress, without an extension. It
        passes every check of the general parser, so only UTF-8 remains to be checked
        here. None (not that read, or invalid UTF-8): hand ``data`` to ``receive_data()``,
        which fails the connection if it must.
        """
        n = len(data)
        if (
            6 <= n < 132
            and data[0] == 0x81
            and data[1] - 0x80 == n - 6
            and self.state == OPEN
            and not self._buf
            and self._stream is None
            and not self._frag_opcode
            and self.deflate is None
            and self.max_message_size >= 125
        ):
            return unmask_text(data)
        return None

    def receive_data(self, data: bytes) -> None:
        if self.close_received or self.state == CLOSED:
            return
        if self._stream is not None:
            data = self._feed_stream(data)
            if not data or self.close_received or self.state == CLOSED:
                return
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                if self._peek is not None:
                    self._peek_text(buf)
                return
            self._buf = bytearray()
            self._parse(bytes(buf))
        else:
            self._parse(data)

    def _peek_text(self, buf: bytes | bytearray | memoryview) -> None:
        """Validate the part of an unfinished text frame that has arrived.

        Invalid UTF-8 then fails the connection as soon as it is on the wire, not when
        the (possibly huge, possibly never finished) frame is complete.
        """
        peek = self._peek
        assert peek is not None
        start = peek.header + peek.checked
        if len(buf) <= start:
            return
        k = peek.checked & 3
        mask = peek.mask[k:] + peek.mask[:k]
        data = apply_mask(buf[start:], mask)
        peek.checked += len(data)
        try:
            peek.decoder.decode(data, False)
        except UnicodeDecodeError:
            self.fail(CLOSE_INVALID_DATA, "Invalid UTF-8 in text message")

    def _parse(self, buf: bytes) -> None:
        """Parse every complete frame in ``buf``; keep the tail for next time."""
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                length = b1 & 0x7F
                if length < 126:
                    header = 6
                elif length == 126:
                    header = 8
                    if end - pos < 4:
                        self._need = 4
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                else:
                    header = 14
                    if end - pos < 10:
                        self._need = 10
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                opcode = b0 & 0x0F
                if not (
                    # The common frame, which passes every check: a whole, masked,
                    # uncompressed text or binary message within the size limit.
                    (b0 == 0x81 or b0 == 0x82)
                    and b1 & 0x80
                    and not self._frag_opcode
                    and length <= self.max_message_size
                ):
                    self._check_header(b0, b1, opcode, length)
                stop = pos + header + length
                if stop > end:
                    if b0 == 0x81 and end - pos >= header:
                        # A whole text message in one frame, still arriving: stream it.
                        self._start_stream(buf, pos + header, length)
                        return
                    self._need = stop - pos
                    if self._peek is None and not b0 & RSV1 and self._is_text(opcode):
                        if end - pos < header:
                            self._need = header  # come back when the mask is here
                        else:
                            self._start_peek(buf, pos, header, opcode)
                    break
                self._peek = None
                payload = apply_mask(buf[pos + header : stop], buf[pos + header - 4 : pos + header])
                pos = stop
                if opcode == OP_TEXT and b0 & FIN_NO_RSV == FIN and not self._frag_opcode:
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError(
                            CLOSE_INVALID_DATA, "Invalid UTF-8 in text message"
                        ) from None
                    self._handler.on_message(text)
                else:
                    self._frame(b0, opcode, payload)
                if self.close_received or self.state == CLOSED:
                    return
            else:
                self._need = 2
        except ProtocolError as exc:
            self.fail(exc.code, exc.reason)
            return
        if pos < end and self.state != CLOSED:
            self._buf = bytearray(buf[pos:])

    def _start_stream(self, buf: bytes, start: int, length: int) -> None:
        self._peek = None
        self._stream = _Stream(bytes(buf[start - 4 : start]), length)
        if start < len(buf):
            self._feed_stream(memoryview(buf)[start:])

    def _feed_stream(self, data: bytes | memoryview) -> bytes:
        """Take the streaming frame's part of ``data``; return what follows the frame."""
        stream = self._stream
        assert stream is not None
        n = len(data)
        last = n >= stream.remaining
        chunk = memoryview(data)[: stream.remaining] if n > stream.remaining else data
        k = stream.offset & 3
        mask = stream.mask[k:] + stream.mask[:k] if k else stream.mask
        try:
            stream.parts.append(stream.decoder.decode(apply_mask(chunk, mask), last))
        except UnicodeDecodeError:
            self.fail(CLOSE_INVALID_DATA, "Invalid UTF-8 in text message")
            return b""
        if not last:
            stream.offset += n
            stream.remaining -= n
            return b""
        self._stream = None
        parts = stream.parts
        self._handler.on_message(parts[0] if len(parts) == 1 else "".join(parts))
        return bytes(data[stream.remaining :]) if n > stream.remaining else b""

    def _is_text(self, opcode: int) -> bool:
        if opcode == OP_TEXT:
            return True
        return opcode == OP_CONT and self._frag_opcode == OP_TEXT and not self._frag_compressed

    def _start_peek(self, buf: bytes, pos: int, header: int, opcode: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")()
        if opcode == OP_CONT and self._utf8 is not None:
            decoder.setstate(self._utf8.getstate())
        mask = bytes(buf[pos + header - 4 : pos + header])
        self._peek = _Peek(header, mask, decoder)
        self._peek_text(memoryview(buf)[pos:])

    def _check_header(self, b0: int, b1: int, opcode: int, length: int) -> None:
        if not b1 & 0x80:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "Client frames must be masked")
        if b0 & 0x30:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "Received frame had RSV bits 2 or 3 set")
        if b0 & RSV1 and (self.deflate is None or opcode not in (OP_TEXT, OP_BINARY)):
            raise ProtocolError(
                CLOSE_PROTOCOL_ERROR,
                RSV1_NOT_NEGOTIATED
                if self.deflate is None
                else "Compression bit set on a control or continuation frame",
            )
        if opcode >= 8:
            if opcode > OP_PONG:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"Unknown opcode {opcode}")
            if not b0 & FIN:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "Received fragmented control frame")
            if length > 125:
                raise ProtocolError(
                    CLOSE_PROTOCOL_ERROR, "Received control frame longer than 125 bytes"
                )
            return
        if opcode > OP_BINARY:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"Unknown opcode {opcode}")
        if length >> 63:
            raise ProtocolError(
                CLOSE_PROTOCOL_ERROR, "Frame length has the most significant bit set"
            )
        if opcode == OP_CONT:
            if not self._frag_opcode:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "Unexpected continuation frame")
        elif self._frag_opcode:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "Missing continuation frame")
        room = self.max_message_size - self._frag_size
        if length > room:
            raise ProtocolError(CLOSE_TOO_BIG, f"Message is too large: {length} > {room}")

    def _inflate(self, payload: bytes, fin: bool) -> bytes:
        deflate = self.deflate
        assert deflate is not None
        try:
            # The limit is for the whole message; the extension counts across fragments.
            return deflate.decompress_fragment(payload, fin=fin, max_size=self.max_message_size)
        except MessageTooBig:
            # workerd's reason, word for word (it knows no size once decompressing).
            raise ProtocolError(CLOSE_TOO_BIG, "Message is too large") from None
        except (DecompressionError, ValueError) as exc:
            raise ProtocolError(CLOSE_INVALID_DATA, f"Invalid compressed data: {exc}") from None

    def _frame(self, b0: int, opcode: int, payload: bytes) -> None:
        fin = b0 & FIN
        if opcode == OP_CONT:
            if self._frag_compressed:
                payload = self._inflate(payload, bool(fin))
            self._append_fragment(payload)
            if fin:
                parts = self._frag_parts
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                op = self._frag_opcode
                decoder = self._utf8
                self._frag_opcode = 0
                self._frag_parts = []
                self._frag_size = 0
                self._frag_compressed = False
                self._utf8 = None
                if op == OP_TEXT:
                    assert decoder is not None
                    self._decode(decoder, b"", final=True)
                    self._handler.on_message(data.decode("utf-8"))
                else:
                    self._handler.on_message(data)
        elif opcode in (OP_TEXT, OP_BINARY):
            if b0 & RSV1:
                payload = self._inflate(payload, bool(fin))
            if fin:  # unfragmented (uncompressed text is handled inline)
                if opcode == OP_TEXT:
                    try:
                        self._handler.on_message(payload.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise ProtocolError(
                            CLOSE_INVALID_DATA, "Invalid UTF-8 in text message"
                        ) from None
                else:
                    self._handler.on_message(payload)
                return
            self._frag_opcode = opcode
            self._frag_compressed = bool(b0 & RSV1)
            if opcode == OP_TEXT:
                self._utf8 = codecs.getincrementaldecoder("utf-8")()
            self._append_fragment(payload)
        elif opcode == OP_CLOSE:
            self._close_frame(payload)
        elif opcode == OP_PING and not self.close_sent:
            self.write(frame_header(FIN | OP_PONG, len(payload)) + payload)
        # OP_PONG: unsolicited pongs are allowed and ignored.

    def _append_fragment(self, payload: bytes) -> None:
        if self._utf8 is not None:
            # Validate as fragments arrive so invalid text fails fast.
            self._decode(self._utf8, payload, final=False)
        self._frag_parts.append(payload)
        self._frag_size += len(payload)

    @staticmethod
    def _decode(decoder: codecs.IncrementalDecoder, data: bytes, *, final: bool) -> None:
        try:
            decoder.decode(data, final)
        except UnicodeDecodeError:
            raise ProtocolError(CLOSE_INVALID_DATA, "Invalid UTF-8 in text message") from None

    def _close_frame(self, payload: bytes) -> None:
        if len(payload) == 1:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "Close frame payload of 1 byte")
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not valid_wire_close_code(code):
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"Invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "Invalid UTF-8 in close reason") from None
        else:
            code, reason = CLOSE_NO_STATUS, ""
        self.close_received = True
        if self.close_sent:
            self.state = CLOSED
        else:
            self.state = CLOSING
        self._handler.on_close_frame(code, reason)

    # -- output ---------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self._send(FIN | OP_TEXT, text.encode("utf-8"))

    def send_encoded_text(self, data: bytes) -> None:
        """``send_text`` for a caller that already holds the UTF-8 bytes."""
        self._send(FIN | OP_TEXT, data)

    def send_binary(self, data: bytes) -> None:
        self._send(FIN | OP_BINARY, data)

    def _send(self, first_byte: int, payload: bytes) -> None:
        if self.close_sent:
            return
        deflate = self.deflate
        if deflate is not None:
            payload, compressed = deflate.encode(payload)
            if compressed:
                first_byte |= RSV1
        n = len(payload)
        if n < _ZERO_COPY:
            self.write(frame_header(first_byte, n) + payload)
        else:
            self.write(frame_header(first_byte, n))
            self.write(payload)

    def send_close(self, code: int | None, reason: str = "") -> None:
        """Send our close frame once; ``code`` None sends one without a status."""
        if self.close_sent:
            return
        payload = close_payload(code, reason)
        self.close_sent = True
        self.write(frame_header(FIN | OP_CLOSE, len(payload)) + payload)
        if self.close_received:
            self.state = CLOSED
        elif self.state == OPEN:
            self.state = CLOSING

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 section 7.1.7): close frame, then stop reading."""
        logger.debug("Failing WebSocket connection: %d %s", code, reason)
        self.send_close(code, reason)
        self.state = CLOSED
        self._buf = bytearray()
        self._stream = None
        self._frag_parts = []
        self._handler.on_failure(code, reason)
