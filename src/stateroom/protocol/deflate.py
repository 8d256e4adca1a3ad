"""permessage-deflate (RFC 7692), server side, sans-I/O.

Two halves:

* :func:`negotiate` reads the client's ``Sec-WebSocket-Extensions`` offers and returns the
  extension state plus the exact response header value, or ``(None, None)`` to run without
  compression. It never does I/O and never looks at anything but the header text.
* :class:`PerMessageDeflate` compresses outgoing messages and decompresses incoming ones. It
  works on message payloads (or on the fragments of one message, in order); framing, RSV bits,
  UTF-8 validation and close codes stay in the connection, which maps this module's errors:

  - :class:`ExtensionHeaderError`: the handshake answers ``400 Bad Request``;
  - :class:`MessageTooBig`: close with ``1009`` (message too big);
  - :class:`DecompressionError`: close with ``1007`` (invalid payload data).

Why the defaults are what they are (see :class:`DeflateOptions`): a server holds one compressor
and one decompressor per connection, and zlib's defaults (32 KiB window, memLevel 8) cost about
300 KiB per connection once both were used. A 4 KiB window with memLevel 5 costs about 50 KiB
and loses little on the small messages WebSocket applications send, so that is the default;
both are options.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_OPTIONS",
    "EXTENSION_NAME",
    "DecompressionError",
    "DeflateError",
    "DeflateOptions",
    "ExtensionHeaderError",
    "MessageTooBig",
    "PerMessageDeflate",
    "negotiate",
    "parse_extensions",
]

log = logging.getLogger(__name__)

EXTENSION_NAME = "permessage-deflate"

# RFC 7692 §7.2.1: a sender removes these 4 octets (the end of an empty stored block that a
# sync flush emits) from each compressed message; the receiver appends them again (§7.2.2).
_TAIL = b"\x00\x00\xff\xff"

# Payloads at least this long are decompressed with a second call for the tail instead of a
# copy with the tail appended: below it, the copy is cheaper than the extra call.
_COPY_TAIL_BELOW = 4096


class DeflateError(Exception):
    """Base class of this module's errors."""


class ExtensionHeaderError(DeflateError, ValueError):
    """The Sec-WebSocket-Extensions header is not syntactically valid (answer 400)."""


class MessageTooBig(DeflateError):
    """A message decompresses to more than the allowed size (close with 1009)."""

    def __init__(self, max_size: int) -> None:
        super().__init__(f"decompressed message exceeds {max_size} bytes")
        self.max_size = max_size


class DecompressionError(DeflateError):
    """Compressed data is corrupt, or runs on after its final block (close with 1007)."""


# --------------------------------------------------------------------------------------------
# Header parsing (RFC 6455 §9.1, with the list and token rules of RFC 9110 §5.6)
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS = re.compile(r"[ \t]*")
_QUOTED = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
# §7.1.2.1/§7.1.2.2: "1*DIGIT" whose value is 8..15, written without leading zeros.
_WINDOW_BITS = re.compile(r"8|9|1[0-5]")

Params = list[tuple[str, str | None]]


def parse_extensions(header: str) -> list[tuple[str, Params]]:
    """Parse a Sec-WebSocket-Extensions value into ``[(name, [(param, value|None)])]``.

    Empty list elements are skipped (RFC 9110 §5.6.1 asks recipients to tolerate them). A
    quoted value is unescaped and must then be a token (RFC 6455 §9.1), so ``a="8"`` equals
    ``a=8``. Anything else that breaks the grammar raises :class:`ExtensionHeaderError`.
    """
    extensions: list[tuple[str, Params]] = []
    pos = 0
    end = len(header)

    def fail(what: str) -> ExtensionHeaderError:
        return ExtensionHeaderError(f"invalid Sec-WebSocket-Extensions at {pos}: {what}")

    def skip_ows(at: int) -> int:
        match = _OWS.match(header, at)
        return match.end() if match else at

    def token(at: int, what: str) -> tuple[str, int]:
        match = _TOKEN.match(header, at)
        if match is None:
            nonlocal pos
            pos = at
            raise fail(f"expected {what}")
        return match.group(), match.end()

    while True:
        pos = skip_ows(pos)
        if pos < end and header[pos] == ",":  # empty list element
            pos += 1
            continue
        if pos >= end:
            break
        name, pos = token(pos, "an extension name")
        params: Params = []
        pos = skip_ows(pos)
        while pos < end and header[pos] == ";":
            pos = skip_ows(pos + 1)
            param, pos = token(pos, "a parameter name")
            value: str | None = None
            after = skip_ows(pos)
            if after < end and header[after] == "=":
                pos = skip_ows(after + 1)
                if pos < end and header[pos] == '"':
                    quoted = _QUOTED.match(header, pos)
                    if quoted is None:
                        raise fail("unterminated or invalid quoted string")
                    value = _QUOTED_PAIR.sub(r"\1", quoted.group(1))
                    if _TOKEN.fullmatch(value) is None:
                        raise fail("quoted parameter value is not a token")
                    pos = quoted.end()
                else:
                    value, pos = token(pos, "a parameter value")
                pos = skip_ows(pos)
            else:
                pos = after
            params.append((param, value))
        extensions.append((name, params))
        if pos >= end:
            break
        if header[pos] != ",":
            raise fail("expected ',' or ';'")
        pos += 1
    return extensions


# --------------------------------------------------------------------------------------------
# Negotiation (RFC 7692 §5, §7.1)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """Server policy for permessage-deflate.

    ``server_max_window_bits`` (9..15) caps the window of our compressor: a smaller window is
    less memory per connection and slightly worse compression. It is sent in the response when
    below 15 or when the client asked for a limit. ``client_max_window_bits`` (9..15) is what we
    ask the client to limit its window to, which sizes our decompressor; it can only be sent when
    the client's offer carries ``client_max_window_bits`` (RFC 7692 §7.1.2.2), otherwise the
    client may use 15. Neither accepts 8: zlib cannot compress with a 256-byte window (see
    :meth:`PerMessageDeflate._new_compressor`), so asking a zlib-based client for 8 fails its
    handshake; a client that *offers* 8 for our side is still accepted.

    The two ``*_no_context_takeover`` flags force that behaviour even if the client did not
    ask. ``compress_level`` and ``mem_level`` go to zlib. Messages shorter than
    ``compress_threshold`` bytes are sent uncompressed (RSV1 clear): deflate cannot shrink them
    enough to pay for the work.
    """

    server_max_window_bits: int = 12
    client_max_window_bits: int = 15
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    compress_level: int = 6
    mem_level: int = 5
    compress_threshold: int = 64

    def __post_init__(self) -> None:
        """Reject settings zlib or the RFC cannot honour, at configuration time."""
        for name in ("server_max_window_bits", "client_max_window_bits"):
            if not 9 <= getattr(self, name) <= 15:
                raise ValueError(f"{name} must be 9..15")
        if not -1 <= self.compress_level <= 9:
            raise ValueError("compress_level must be -1..9")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("mem_level must be 1..9")
        if self.compress_threshold < 0:
            raise ValueError("compress_threshold must be >= 0")


DEFAULT_OPTIONS = DeflateOptions()


@dataclass(frozen=True, slots=True)
class _Offer:
    """One valid permessage-deflate offer, as the client wrote it."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = None  # True: offered without a value


def _parse_offer(params: Params) -> _Offer | None:
    """Validate one offer's parameters; None when the RFC says to decline it.

    §7.1: an offer with an unknown parameter, a duplicate parameter, or an invalid value is
    declined (and the next offer is considered), not treated as a broken header.
    """
    seen: set[str] = set()
    found: dict[str, bool | int] = {}
    for name, value in params:
        if name in seen:
            log.debug("declining %s offer: duplicate %s", EXTENSION_NAME, name)
            return None
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                log.debug("declining %s offer: %s takes no value", EXTENSION_NAME, name)
                return None
            found[name] = True
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            if value is None:
                if name == "server_max_window_bits":
                    log.debug("declining %s offer: %s needs a value", EXTENSION_NAME, name)
                    return None
                found[name] = True
            elif _WINDOW_BITS.fullmatch(value):
                found[name] = int(value)
            else:
                log.debug("declining %s offer: %s=%r", EXTENSION_NAME, name, value)
                return None
        else:
            log.debug("declining %s offer: unknown parameter %s", EXTENSION_NAME, name)
            return None
    server_bits = found.get("server_max_window_bits")
    client_bits = found.get("client_max_window_bits")
    return _Offer(
        server_no_context_takeover=bool(found.get("server_no_context_takeover")),
        client_no_context_takeover=bool(found.get("client_no_context_takeover")),
        server_max_window_bits=server_bits if isinstance(server_bits, int) else None,
        client_max_window_bits=client_bits,
    )


def negotiate(
    offers_header: str | None,
    *,
    enabled: bool = True,
    options: DeflateOptions = DEFAULT_OPTIONS,
) -> tuple[PerMessageDeflate | None, str | None]:
    """Accept the first acceptable permessage-deflate offer, if any.

    ``offers_header`` is the request's Sec-WebSocket-Extensions value; several header lines
    must be joined with ``", "`` first. Returns the extension and the value for the response's
    Sec-WebSocket-Extensions header, or ``(None, None)`` when nothing is accepted (then the
    response carries no such header and no message may have RSV1 set). Offers for other
    extensions are ignored. Raises :class:`ExtensionHeaderError` for a syntactically broken
    header; with ``enabled=False`` the header is not even parsed.
    """
    if not enabled or offers_header is None or not offers_header.strip():
        return None, None
    for name, params in parse_extensions(offers_header):
        if name != EXTENSION_NAME:
            continue
        offer = _parse_offer(params)
        if offer is None:
            continue
        extension = _accept(offer, options)
        return extension, extension.response_header()
    return None, None


def _accept(offer: _Offer, options: DeflateOptions) -> PerMessageDeflate:
    """Turn a valid offer into agreed parameters under our policy (RFC 7692 §7.1)."""
    # §7.1.2.1: a server must not use a larger window than the client asked for; when the
    # client did not ask, it may still announce a smaller one, which we do below 15.
    server_bits = options.server_max_window_bits
    if offer.server_max_window_bits is not None:
        server_bits = min(server_bits, offer.server_max_window_bits)
    # A smaller window than the client allows needs no announcing: its decoder, sized for
    # 2^15 bytes, reads our 2^12-window output all the same, and the response stays the one
    # workerd sends.
    announce_server_bits = offer.server_max_window_bits is not None

    # §7.1.2.2: only if the client offered client_max_window_bits may the response carry it,
    # with a value no larger than the client's (15 when it gave none).
    client_bits = 15
    announce_client_bits = False
    if offer.client_max_window_bits is not None:
        offered = 15 if offer.client_max_window_bits is True else int(offer.client_max_window_bits)
        client_bits = min(offered, options.client_max_window_bits)
        # Always answered, as workerd does ("client_max_window_bits=15" for a bare offer),
        # so both sides state the same agreement.
        announce_client_bits = True

    return PerMessageDeflate(
        server_no_context_takeover=(
            offer.server_no_context_takeover or options.server_no_context_takeover
        ),
        client_no_context_takeover=(
            offer.client_no_context_takeover or options.client_no_context_takeover
        ),
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
        announce_server_max_window_bits=announce_server_bits,
        announce_client_max_window_bits=announce_client_bits,
        compress_level=options.compress_level,
        mem_level=options.mem_level,
        compress_threshold=options.compress_threshold,
    )


# --------------------------------------------------------------------------------------------
# Compression and decompression (RFC 7692 §7.2)
# --------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class PerMessageDeflate:
    """Agreed permessage-deflate parameters and the zlib state of one connection (server side).

    "server" is us (we compress with the server_* parameters), "client" is the peer (we
    decompress what it compressed under the client_* parameters). Not thread-safe; one per
    connection. zlib objects are created on first use, so an idle connection costs nothing.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15
    announce_server_max_window_bits: bool = False
    announce_client_max_window_bits: bool = False
    compress_level: int = 6
    mem_level: int = 5
    compress_threshold: int = 64
    _compressor: zlib._Compress | None = field(default=None, init=False, repr=False)
    _decompressor: zlib._Decompress | None = field(default=None, init=False, repr=False)
    _in_message: bool = field(default=False, init=False, repr=False)
    _message_size: int = field(default=0, init=False, repr=False)
    _message_input: int = field(default=0, init=False, repr=False)

    def response_header(self) -> str:
        """The Sec-WebSocket-Extensions response value for these parameters."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.announce_server_max_window_bits:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.announce_client_max_window_bits:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)

    # -- sending ------------------------------------------------------------------------------

    def _new_compressor(self) -> zlib._Compress:
        """A raw-deflate compressor within the agreed server window.

        zlib (since 1.2.9) rejects a raw-deflate window of 8 bits, so 8 becomes 9. That still
        honours a 256-byte limit: zlib never emits a match distance above its window minus
        MIN_LOOKAHEAD (262 bytes), i.e. at most 250 bytes back with a 512-byte window, so the
        stream decodes with a 256-byte window. (websockets instead declines such offers.)
        """
        return zlib.compressobj(
            self.compress_level,
            zlib.DEFLATED,
            -max(self.server_max_window_bits, 9),
            self.mem_level,
        )

    def should_compress(self, size: int) -> bool:
        """Whether a message of ``size`` bytes is worth compressing.

        Deciding before compressing matters: with context takeover the compressor's history
        must match what the peer decompressed, so a message, once compressed, must be sent
        compressed. A message sent uncompressed (RSV1 clear) touches neither side's state.
        """
        return size >= self.compress_threshold

    def compress(self, payload: bytes | bytearray | memoryview) -> bytes:
        """Compress one whole message; send the result with RSV1 set on its first frame.

        The trailing 00 00 ff ff of the sync flush is removed (§7.2.1). Without server context
        takeover, a full flush instead of a sync flush resets the compressor's history after
        each message, so one compressor is reused instead of paying zlib's setup per message;
        its output also ends in 00 00 ff ff and never refers to earlier messages.
        """
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = self._new_compressor()
        mode = zlib.Z_FULL_FLUSH if self.server_no_context_takeover else zlib.Z_SYNC_FLUSH
        data = compressor.compress(payload) + compressor.flush(mode)
        if data[-4:] != _TAIL:  # cannot happen with zlib; a broken message must not go out
            raise DeflateError("zlib flush did not end with an empty stored block")
        return data[:-4]

    def encode(self, payload: bytes | bytearray | memoryview) -> tuple[bytes, bool]:
        """``(data, rsv1)`` for an outgoing message: compressed when it pays, else as is."""
        if self.should_compress(len(payload)):
            return self.compress(payload), True
        return bytes(payload), False

    # -- receiving ----------------------------------------------------------------------------

    def decompress(self, payload: bytes | bytearray | memoryview, max_size: int) -> bytes:
        """Decompress one whole message whose first frame had RSV1 set.

        ``max_size`` bounds the decompressed size and zlib's output buffer alike, so a small
        payload that inflates hugely (a zip bomb) costs at most ``max_size`` bytes before
        :class:`MessageTooBig` is raised. Corrupt data raises :class:`DecompressionError`.
        After either error the connection must be closed: the decompressor's state is lost.
        """
        return self.decompress_fragment(payload, fin=True, max_size=max_size)

    def decompress_fragment(
        self, data: bytes | bytearray | memoryview, *, fin: bool, max_size: int
    ) -> bytes:
        """Decompress the next fragment of a compressed message, in order.

        Call it for the first frame (the one with RSV1) and each continuation frame, with
        ``fin`` as in the frame; the compressed message need never be buffered. ``max_size`` is
        the limit for the whole message; the fragments' output is counted here.
        """
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        decompressor = self._decompressor
        if decompressor is None:
            # Cheap: zlib allocates the window on first use, not here.
            decompressor = self._decompressor = zlib.decompressobj(-self.client_max_window_bits)
        if not self._in_message:
            self._in_message = True
            self._message_size = 0
            self._message_input = 0
        self._message_input += len(data)
        budget = max_size - self._message_size
        if fin and not self._message_input:
            # An empty compressed message is not valid deflate (a compliant sender emits at
            # least 0x00, §7.2.3.6), and inflating the bare tail would leave the decompressor
            # inside a stored block. Read it as the empty message it was meant to be.
            out = b""
        elif decompressor.eof:
            # An earlier fragment ended the deflate stream with a BFINAL block (§7.2.3.4);
            # only empty fragments may follow it.
            if data:
                raise DecompressionError("data after the final deflate block")
            out = b""
        elif fin and len(data) < _COPY_TAIL_BELOW:
            out = self._inflate(decompressor, bytes(data) + _TAIL, budget, max_size, _TAIL)
        else:
            out = self._inflate(decompressor, data, budget, max_size, b"")
            if fin and not decompressor.eof:
                out += self._inflate(decompressor, _TAIL, budget - len(out), max_size, b"")
        self._message_size += len(out)
        if fin:
            self._in_message = False
            if decompressor.eof or self.client_no_context_takeover:
                # After a BFINAL block the stream is over and the next message starts a new
                # one. Without client context takeover nothing is carried over. Either way,
                # drop the decompressor (and its window) until the next compressed message.
                self._decompressor = None
        return out

    @staticmethod
    def _inflate(
        decompressor: zlib._Decompress,
        data: bytes | bytearray | memoryview,
        budget: int,
        max_size: int,
        may_follow_end: bytes,
    ) -> bytes:
        """Inflate ``data`` producing at most ``budget`` bytes, else raise MessageTooBig.

        Asking zlib for ``budget + 1`` bytes tells the two cases apart without a second call:
        if it returns no more than ``budget`` bytes, it had nothing more to give. If the
        stream ends (BFINAL) inside ``data``, only ``may_follow_end`` (our appended tail, or
        nothing) may come after the final block.
        """
        try:
            out = decompressor.decompress(data, budget + 1)
        except zlib.error as exc:
            raise DecompressionError(f"invalid compressed data: {exc}") from exc
        if len(out) > budget or decompressor.unconsumed_tail:
            raise MessageTooBig(max_size)
        if decompressor.eof and decompressor.unused_data not in (b"", may_follow_end):
            raise DecompressionError("data after the final deflate block")
        return out
