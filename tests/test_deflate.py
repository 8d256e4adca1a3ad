"""permessage-deflate (RFC 7692): negotiation, compression, decompression and limits.

The compressed data is checked against two independent implementations: Python's zlib driven
directly (as a strict reference peer, with the exact window sizes that were agreed) and the
`websockets` library's permessage-deflate, a widely used client.
"""

from __future__ import annotations

import itertools
import json
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension

from stateroom.protocol.deflate import (
    DecompressionError,
    DeflateOptions,
    ExtensionHeaderError,
    MessageTooBig,
    PerMessageDeflate,
    negotiate,
    parse_extensions,
)

TAIL = b"\x00\x00\xff\xff"
WIDE = DeflateOptions(server_max_window_bits=15, client_max_window_bits=15)


def chat_messages(count: int = 40) -> list[bytes]:
    """Similar JSON messages: later ones compress by referring to earlier ones."""
    return [
        json.dumps(
            {"type": "chat", "room": "lobby", "seq": i, "user": f"user{i % 7}", "text": "hi " * i}
        ).encode()
        for i in range(count)
    ]


# --------------------------------------------------------------------------------------------
# Negotiation
# --------------------------------------------------------------------------------------------

ACCEPTED = [
    # (offer, options, response)
    ("permessage-deflate", WIDE, "permessage-deflate"),
    # Our 2^12 compression window is not announced: the client's decoder reads it anyway.
    ("permessage-deflate", None, "permessage-deflate"),
    # A bare client_max_window_bits is answered with 15, byte for byte what workerd sends.
    (
        "permessage-deflate; client_max_window_bits",
        None,
        "permessage-deflate; client_max_window_bits=15",
    ),
    (
        "permessage-deflate; client_max_window_bits",
        WIDE,
        "permessage-deflate; client_max_window_bits=15",
    ),
    (
        "permessage-deflate; client_max_window_bits=10",
        WIDE,
        "permessage-deflate; client_max_window_bits=10",
    ),
    (
        "permessage-deflate; client_max_window_bits=15",
        None,
        "permessage-deflate; client_max_window_bits=15",
    ),
    (
        "permessage-deflate; server_max_window_bits=10",
        None,
        "permessage-deflate; server_max_window_bits=10",
    ),
    (
        "permessage-deflate; server_max_window_bits=15",
        None,
        "permessage-deflate; server_max_window_bits=12",
    ),
    (
        "permessage-deflate; server_max_window_bits=15",
        WIDE,
        "permessage-deflate; server_max_window_bits=15",
    ),
    (
        "permessage-deflate; server_max_window_bits=8",
        None,
        "permessage-deflate; server_max_window_bits=8",
    ),
    (
        "permessage-deflate; server_no_context_takeover",
        WIDE,
        "permessage-deflate; server_no_context_takeover",
    ),
    (
        "permessage-deflate; client_no_context_takeover",
        WIDE,
        "permessage-deflate; client_no_context_takeover",
    ),
    (
        "permessage-deflate",
        DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    ),
    (
        "permessage-deflate; client_max_window_bits; server_max_window_bits=9; "
        "client_no_context_takeover; server_no_context_takeover",
        None,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=9; client_max_window_bits=15",
    ),
    # Quoted values are unescaped, then read like tokens.
    ('permessage-deflate; server_max_window_bits="10"', WIDE, None),
    ('permessage-deflate; server_max_window_bits="1\\0"', WIDE, None),
    # Optional whitespace around ';', '=' and ','; empty list elements.
    ("permessage-deflate ;server_max_window_bits = 10", WIDE, None),
    (" ,, permessage-deflate\t;\tserver_max_window_bits=10 , ,", WIDE, None),
    # Other extensions are skipped; the first acceptable permessage-deflate offer wins.
    ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10", WIDE, None),
    (
        "permessage-deflate; server_max_window_bits=16, "
        "permessage-deflate; server_max_window_bits=10, permessage-deflate",
        WIDE,
        None,
    ),
    ("permessage-deflate; foo=bar, permessage-deflate; server_max_window_bits=10", WIDE, None),
]


@pytest.mark.parametrize(("offer", "options", "response"), ACCEPTED)
def test_accepted_offers(offer: str, options: DeflateOptions | None, response: str | None) -> None:
    extension, header = negotiate(offer, options=options or DeflateOptions())
    assert extension is not None
    expected = response or "permessage-deflate; server_max_window_bits=10"
    assert header == expected
    assert extension.response_header() == expected


DECLINED = [
    None,
    "",
    "   ",
    ", ,",
    "x-webkit-deflate-frame",
    "x-foo; bar=baz",
    "Permessage-Deflate",  # extension names are compared exactly
    "permessage-deflate; server_max_window_bits",  # needs a value
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=08",  # no leading zeros
    "permessage-deflate; server_max_window_bits=+9",
    "permessage-deflate; server_max_window_bits=abc",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; client_max_window_bits=100",
    'permessage-deflate; client_max_window_bits="x"',
    "permessage-deflate; server_no_context_takeover=true",
    "permessage-deflate; client_no_context_takeover=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
    "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    "permessage-deflate; foo",
    "permessage-deflate; mux",
    "permessage-deflate; server_max_window_bits=16, permessage-deflate; foo",
]


@pytest.mark.parametrize("offer", DECLINED)
def test_declined_offers(offer: str | None) -> None:
    assert negotiate(offer) == (None, None)


BROKEN = [
    "permessage-deflate;",
    "permessage-deflate; ",
    ";",
    "permessage-deflate;;server_no_context_takeover",
    "permessage-deflate; =10",
    "permessage-deflate; server_max_window_bits=",
    'permessage-deflate; server_max_window_bits="10',
    'permessage-deflate; server_max_window_bits="1 0"',  # unescaped value must be a token
    'permessage-deflate; server_max_window_bits=""',
    "permessage deflate",
    "permessage-deflate server_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10 11",
    "perm@ssage-deflate",
    "permessage-deflate; a=b=c",
    "permessage-deflate\x00",
    "permessage-deflate; x=\u00e9",
]


@pytest.mark.parametrize("header", BROKEN)
def test_broken_headers_raise(header: str) -> None:
    with pytest.raises(ExtensionHeaderError):
        negotiate(header)


@pytest.mark.parametrize("header", BROKEN)
def test_disabled_ignores_the_header(header: str) -> None:
    assert negotiate(header, enabled=False) == (None, None)
    assert negotiate("permessage-deflate", enabled=False) == (None, None)


def test_parse_extensions_structure() -> None:
    header = 'a, b; x; y=1 , c;z="q\\"" ,,d'
    with pytest.raises(ExtensionHeaderError):
        parse_extensions(header)  # q" is not a token
    assert parse_extensions('a, b; x; y=1 , c;z="q" ,,d') == [
        ("a", []),
        ("b", [("x", None), ("y", "1")]),
        ("c", [("z", "q")]),
        ("d", []),
    ]


def test_negotiated_parameters() -> None:
    extension, _ = negotiate(
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; "
        "client_max_window_bits=11"
    )
    assert extension is not None
    assert extension.server_no_context_takeover
    assert not extension.client_no_context_takeover
    assert extension.server_max_window_bits == 9
    assert extension.client_max_window_bits == 11


def test_client_window_is_15_when_not_offered() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    assert extension.client_max_window_bits == 15


@pytest.mark.parametrize(
    "bad",
    [
        {"server_max_window_bits": 8},
        {"client_max_window_bits": 8},
        {"server_max_window_bits": 16},
        {"compress_level": 10},
        {"mem_level": 0},
        {"compress_threshold": -1},
    ],
)
def test_options_are_validated(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DeflateOptions(**bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Round trips against zlib as a strict reference peer
# --------------------------------------------------------------------------------------------


class ZlibClient:
    """A client doing RFC 7692 by the book with raw zlib, for the agreed parameters.

    It decompresses with exactly the agreed server window, in small output steps so that
    zlib's own window (not the output buffer) serves every back-reference: a server that used
    a larger window than agreed fails here with "invalid distance too far back".
    """

    def __init__(self, extension: PerMessageDeflate) -> None:
        self.ext = extension
        self.inflater = self._new_inflater()
        self.deflater = self._new_deflater()

    def _new_inflater(self) -> zlib._Decompress:
        return zlib.decompressobj(-self.ext.server_max_window_bits)

    def _new_deflater(self) -> zlib._Compress:
        # zlib cannot compress with 8 bits; 9 keeps distances under 256 (see deflate.py).
        return zlib.compressobj(9, zlib.DEFLATED, -max(self.ext.client_max_window_bits, 9), 9)

    def decode(self, data: bytes) -> bytes:
        if self.ext.server_no_context_takeover:
            self.inflater = self._new_inflater()
        out = bytearray()
        pending = data + TAIL
        while pending:
            out += self.inflater.decompress(pending, 7)
            pending = self.inflater.unconsumed_tail
        return bytes(out)

    def encode(self, message: bytes) -> bytes:
        if self.ext.client_no_context_takeover:
            self.deflater = self._new_deflater()
        data = self.deflater.compress(message) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        return data[:-4]


def all_offers() -> list[str]:
    """Every combination of the four parameters, with a spread of window sizes."""
    offers = []
    for snct, cnct, sbits, cbits in itertools.product(
        (False, True), (False, True), (None, 8, 9, 12, 15), (None, True, 8, 10, 15)
    ):
        params = ["permessage-deflate"]
        if snct:
            params.append("server_no_context_takeover")
        if cnct:
            params.append("client_no_context_takeover")
        if sbits is not None:
            params.append(f"server_max_window_bits={sbits}")
        if cbits is True:
            params.append("client_max_window_bits")
        elif cbits is not None:
            params.append(f"client_max_window_bits={cbits}")
        offers.append("; ".join(params))
    return offers


@pytest.mark.parametrize("options", [DeflateOptions(), WIDE], ids=["default", "wide"])
@pytest.mark.parametrize("offer", all_offers())
def test_round_trip_with_zlib(offer: str, options: DeflateOptions) -> None:
    extension, _ = negotiate(offer, options=options)
    assert extension is not None
    client = ZlibClient(extension)
    # Long, repetitive messages with far back-references: distances exceed small windows.
    messages = [*chat_messages(), bytes(range(256)) * 64, b"", b"x", *chat_messages(5)]
    for message in messages:
        assert client.decode(extension.compress(message)) == message
        assert extension.decompress(client.encode(message), 1 << 20) == message


def test_window_8_output_decodes_with_a_256_byte_window() -> None:
    """zlib compresses with 9 bits for an agreed 8; a strict 8-bit inflater must cope."""
    extension, header = negotiate("permessage-deflate; server_max_window_bits=8")
    assert extension is not None and header is not None
    assert header.endswith("server_max_window_bits=8")
    client = ZlibClient(extension)  # inflates with wbits=-8
    payload = b"".join(bytes([i % 251]) * (i % 5 + 1) for i in range(20000))
    for message in [payload, payload[::-1], payload]:
        assert client.decode(extension.compress(message)) == message


# --------------------------------------------------------------------------------------------
# Round trips against the websockets library's client
# --------------------------------------------------------------------------------------------


def websockets_client_offers() -> list[ClientPerMessageDeflateFactory]:
    factories = []
    for snct, cnct, sbits, cbits in itertools.product(
        (False, True), (False, True), (None, 8, 9, 11, 15), (None, True, 9, 10, 15)
    ):
        factories.append(
            ClientPerMessageDeflateFactory(
                server_no_context_takeover=snct,
                client_no_context_takeover=cnct,
                server_max_window_bits=sbits,
                client_max_window_bits=cbits,
            )
        )
    return factories


def offer_text(factory: ClientPerMessageDeflateFactory) -> str:
    """The offer a websockets client makes, as test id and for negotiate()."""
    return build_extension([(factory.name, factory.get_request_params())])


@pytest.mark.parametrize("options", [DeflateOptions(), WIDE], ids=["default", "wide"])
@pytest.mark.parametrize("factory", websockets_client_offers(), ids=offer_text)
def test_round_trip_with_websockets(
    factory: ClientPerMessageDeflateFactory, options: DeflateOptions
) -> None:
    extension, response = negotiate(offer_text(factory), options=options)
    assert extension is not None and response is not None
    [(name, params)] = parse_extension(response)
    assert name == "permessage-deflate"
    client = factory.process_response_params(params, [])  # raises if we broke the RFC

    messages = [*chat_messages(), b"", bytes(range(256)) * 40]
    for message in messages:
        # Client to server, whole and fragmented into three frames.
        frame = client.encode(Frame(Opcode.BINARY, message))
        assert frame.rsv1
        assert extension.decompress(bytes(frame.data), 1 << 20) == message
        thirds = [message[: len(message) // 3], message[len(message) // 3 : -5], message[-5:]]
        frames = [
            client.encode(Frame(Opcode.TEXT, thirds[0], fin=False)),
            client.encode(Frame(Opcode.CONT, thirds[1], fin=False)),
            client.encode(Frame(Opcode.CONT, thirds[2], fin=True)),
        ]
        assert [f.rsv1 for f in frames] == [True, False, False]
        out = b"".join(
            extension.decompress_fragment(bytes(f.data), fin=f.fin, max_size=1 << 20)
            for f in frames
        )
        assert out == message
        # Server to client.
        decoded = client.decode(Frame(Opcode.BINARY, extension.compress(message), rsv1=True))
        assert decoded.data == message


# --------------------------------------------------------------------------------------------
# Size limits
# --------------------------------------------------------------------------------------------


def zip_bomb(size: int) -> bytes:
    """``size`` zero bytes, compressed in chunks so the test itself stays small."""
    deflater = zlib.compressobj(1, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [deflater.compress(chunk) for _ in range(size >> 20)]
    parts.append(deflater.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


def test_zip_bomb_is_stopped_without_allocating_it() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    bomb = zip_bomb(64 << 20)  # 64 MiB of zeros in a few hundred KiB
    assert len(bomb) < 1 << 20
    limit = 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooBig) as info:
            extension.decompress(bomb, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.max_size == limit
    assert peak < 4 * limit


def test_zip_bomb_across_fragments() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    bomb = zip_bomb(8 << 20)
    step = len(bomb) // 10 + 1
    pieces = [bomb[i : i + step] for i in range(0, len(bomb), step)]
    with pytest.raises(MessageTooBig):
        for i, piece in enumerate(pieces):
            extension.decompress_fragment(piece, fin=i == len(pieces) - 1, max_size=1 << 20)


@pytest.mark.parametrize("size", [0, 1, 100, 4095, 4096, 70000])
def test_limit_is_exact(size: int) -> None:
    message = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    for limit, fits in [(size, True), (size + 1, True), (size - 1, False)]:
        if limit < 0:
            continue
        server, _ = negotiate("permessage-deflate", options=WIDE)
        assert server is not None
        data = ZlibClient(server).encode(message)
        if fits:
            assert server.decompress(data, limit) == message
        else:
            with pytest.raises(MessageTooBig):
                server.decompress(data, limit)


def test_limit_counts_the_whole_message_not_each_fragment() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    data = ZlibClient(extension).encode(b"a" * 1000 + bytes(range(256)) * 4)
    half = len(data) // 2
    assert len(extension.decompress_fragment(data[:half], fin=False, max_size=2024)) <= 2024
    assert extension.decompress_fragment(data[half:], fin=True, max_size=2024) is not None
    # The same message against a limit just under its size fails on the second fragment.
    data = ZlibClient(extension).encode(b"a" * 1000 + bytes(range(256)) * 4)
    with pytest.raises(MessageTooBig):
        extension.decompress_fragment(data[:half], fin=False, max_size=2023)
        extension.decompress_fragment(data[half:], fin=True, max_size=2023)


# --------------------------------------------------------------------------------------------
# Context takeover
# --------------------------------------------------------------------------------------------


def test_server_context_takeover_shrinks_repeated_messages() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    message = json.dumps({"unique": list(range(200))}).encode()
    first = extension.compress(message)
    second = extension.compress(message)
    assert len(second) < len(first) // 4


def test_server_no_context_takeover_makes_messages_independent() -> None:
    extension, _ = negotiate("permessage-deflate; server_no_context_takeover")
    assert extension is not None
    message = json.dumps({"unique": list(range(200))}).encode()
    first = extension.compress(message)
    second = extension.compress(message)
    assert first == second
    # Each decodes with a brand-new inflater.
    for data in (first, second):
        assert zlib.decompressobj(-12).decompress(data + TAIL) == message


def test_client_context_takeover_is_followed() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    client = ZlibClient(extension)
    messages = chat_messages(20)
    encoded = [client.encode(m) for m in messages]
    assert len(encoded[-1]) < len(messages[-1]) // 3  # refers to earlier messages
    assert [extension.decompress(e, 1 << 20) for e in encoded] == messages


def test_client_no_context_takeover_drops_the_decompressor() -> None:
    extension, _ = negotiate("permessage-deflate; client_no_context_takeover")
    assert extension is not None
    client = ZlibClient(extension)
    for message in chat_messages(5):
        assert extension.decompress(client.encode(message), 1 << 20) == message
        assert extension._decompressor is None


# --------------------------------------------------------------------------------------------
# Odd but valid input, and invalid input
# --------------------------------------------------------------------------------------------


def test_empty_message() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    assert extension.compress(b"") == b"\x00"  # RFC 7692 §7.2.3.6
    assert extension.decompress(b"\x00", 10) == b""
    # An empty compressed payload is not valid deflate; it is read as an empty message
    # without disturbing the decompressor's state for the next one.
    client = ZlibClient(extension)
    for message in chat_messages(3):
        assert extension.decompress(b"", 10) == b""
        assert extension.decompress(client.encode(message), 1 << 20) == message


def test_empty_fragments() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    data = ZlibClient(extension).encode(b"hello hello hello")
    out = extension.decompress_fragment(b"", fin=False, max_size=100)
    out += extension.decompress_fragment(data, fin=False, max_size=100)
    out += extension.decompress_fragment(b"", fin=True, max_size=100)
    assert out == b"hello hello hello"


def test_message_ending_with_a_final_block() -> None:
    """§7.2.3.4: a sender may end a message with BFINAL; the next starts a new stream."""
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    for message in chat_messages(3):
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = deflater.compress(message) + deflater.flush(zlib.Z_FINISH)
        assert extension.decompress(data, 1 << 20) == message


def test_data_after_a_final_block_is_rejected() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = deflater.compress(b"hello") + deflater.flush(zlib.Z_FINISH)
    with pytest.raises(DecompressionError):
        extension.decompress(data + b"\x00", 100)
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    extension.decompress_fragment(data, fin=False, max_size=100)
    with pytest.raises(DecompressionError):
        extension.decompress_fragment(b"\x00", fin=True, max_size=100)


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"\x07garbage", bytes(range(200))])
def test_corrupt_data(data: bytes) -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    with pytest.raises(DecompressionError):
        extension.decompress(data, 1 << 20)


def test_large_fragments_use_the_two_call_path() -> None:
    extension, _ = negotiate("permessage-deflate", options=WIDE)
    assert extension is not None
    message = bytes(range(256)) * 400
    data = zlib.compressobj(0, zlib.DEFLATED, -15)  # stored blocks: payload > 4096 bytes
    encoded = data.compress(message) + data.flush(zlib.Z_SYNC_FLUSH)
    assert extension.decompress(encoded[:-4], len(message)) == message


def test_encode_skips_small_messages() -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    assert extension.encode(b"tiny") == (b"tiny", False)
    big = b"x" * 100
    data, rsv1 = extension.encode(big)
    assert rsv1
    assert ZlibClient(extension).decode(data) == big


def test_uncompressed_messages_do_not_disturb_context() -> None:
    """Messages sent with RSV1 clear leave both sides' windows alone."""
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    client = ZlibClient(extension)
    for message in chat_messages(10):
        for payload in (message, message[:10]):
            data, rsv1 = extension.encode(payload)
            assert (client.decode(data) if rsv1 else data) == payload


# --------------------------------------------------------------------------------------------
# Property: any sequence of messages, any parameters, any fragmentation
# --------------------------------------------------------------------------------------------

messages_strategy = st.lists(
    st.one_of(
        st.binary(max_size=600),
        st.text(max_size=300).map(str.encode),
        st.sampled_from(chat_messages(8)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    offer=st.sampled_from(all_offers()),
    wide=st.booleans(),
    messages=messages_strategy,
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=4),
)
def test_round_trip_property(
    offer: str, wide: bool, messages: list[bytes], cuts: list[int]
) -> None:
    extension, _ = negotiate(offer, options=WIDE if wide else DeflateOptions())
    assert extension is not None
    client = ZlibClient(extension)
    for message in messages:
        assert client.decode(extension.compress(message)) == message
        data = client.encode(message)
        points = sorted({min(c, len(data)) for c in cuts})
        pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
        out = b"".join(
            extension.decompress_fragment(p, fin=i == len(pieces) - 1, max_size=1 << 16)
            for i, p in enumerate(pieces)
        )
        assert out == message


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('permsagdflt-_=;," \t\\01589xé')), max_size=60))
def test_negotiate_never_fails_unexpectedly(header: str) -> None:
    try:
        extension, response = negotiate(header)
    except ExtensionHeaderError:
        return
    if extension is None:
        assert response is None
    else:
        # Whatever was accepted answers with a header the websockets client can parse.
        assert response is not None
        assert parse_extension(response)[0][0] == "permessage-deflate"


@settings(max_examples=200, deadline=None)
@given(garbage=st.lists(st.binary(max_size=50), min_size=1, max_size=4))
def test_garbage_only_raises_deflate_errors(garbage: list[bytes]) -> None:
    extension, _ = negotiate("permessage-deflate")
    assert extension is not None
    for i, piece in enumerate(garbage):
        try:
            out = extension.decompress_fragment(piece, fin=i == len(garbage) - 1, max_size=4096)
        except (DecompressionError, MessageTooBig):
            return
        assert len(out) <= 4096
