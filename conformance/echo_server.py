"""A minimal WebSocket echo server on the `websockets` library.

Why it exists: it is the known-good reference testee for the Autobahn harness. Running
`conformance/run.sh --server websockets` against it shows what a conforming server scores, so a
difference in stateroom's results is stateroom's, not the harness's.

Text is echoed as text and binary as binary. Messages of up to --max-size bytes (default 32 MiB;
Autobahn's 9.* cases send 16 MiB) in up to 131072 fragments are accepted, permessage-deflate is
negotiated when offered, and keepalive pings are off so they cannot interleave with the cases'
frames.

It is not fully strict: websockets' asyncio server scores NON-STRICT on some cases where it
fails the connection before echoing the messages that preceded the bad frame (3.2, 4.1.3, ...)
and on 6.4.* (it checks UTF-8 per frame, not as a frame's bytes arrive), and FAILED on 7.1.5.

With ``--deflate stateroom`` the server negotiates and runs permessage-deflate with
``stateroom.protocol.deflate`` (through a websockets extension adapter) instead of websockets'
own, so Autobahn's 12.* and 13.* cases test that module over a real connection before the
stateroom server uses it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence

# websockets refuses messages of more than 4096 fragments unless told otherwise; Autobahn's
# 9.3.1 and 9.4.1 send 4 MiB in 64-byte fragments (65536 of them). Set before the import,
# which reads it.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 17))

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from websockets.extensions.base import Extension, ServerExtensionFactory
from websockets.frames import CTRL_OPCODES, Frame, Opcode
from websockets.headers import build_extension, parse_extension
from websockets.typing import ExtensionName, ExtensionParameter

from stateroom.protocol import deflate

log = logging.getLogger("conformance.echo_server")


class StateroomDeflate(Extension):
    """Runs one connection's permessage-deflate through stateroom.protocol.deflate."""

    name = ExtensionName(deflate.EXTENSION_NAME)

    def __init__(self, impl: deflate.PerMessageDeflate) -> None:
        self.impl = impl
        self.in_compressed_message = False
        self.produced = 0

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Decompress each fragment of a compressed message as it arrives."""
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is Opcode.CONT:
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
            if not self.in_compressed_message:
                return frame
        else:
            if not frame.rsv1:
                return frame
            self.in_compressed_message = True
            self.produced = 0
        # websockets passes what is left of the message limit; the module wants the whole.
        limit = (1 << 62) if max_size is None else max_size + self.produced
        try:
            data = self.impl.decompress_fragment(frame.data, fin=frame.fin, max_size=limit)
        except deflate.MessageTooBig as exc:
            raise PayloadTooBig(None, max_size) from exc
        except deflate.DecompressionError as exc:
            raise ProtocolError(str(exc)) from exc
        self.produced += len(data)
        if frame.fin:
            self.in_compressed_message = False
        return Frame(frame.opcode, data, frame.fin, False, frame.rsv2, frame.rsv3)

    def encode(self, frame: Frame) -> Frame:
        """Compress whole messages (the echo sends each message as a single frame)."""
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is Opcode.CONT or not frame.fin:
            raise NotImplementedError("fragmented sends are not used by the echo server")
        data, rsv1 = self.impl.encode(frame.data)
        return Frame(frame.opcode, data, frame.fin, rsv1, frame.rsv2, frame.rsv3)


class StateroomDeflateFactory(ServerExtensionFactory):
    """Accepts permessage-deflate offers with stateroom.protocol.deflate.negotiate()."""

    name = ExtensionName(deflate.EXTENSION_NAME)

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        """Negotiate one offer: websockets hands them over one at a time, in order."""
        if any(other.name == self.name for other in accepted_extensions):
            raise NegotiationError("permessage-deflate already accepted")
        offer = build_extension([(self.name, list(params))])
        impl, response = deflate.negotiate(offer)
        if impl is None or response is None:
            raise NegotiationError(f"declined: {offer}")
        [(_, response_params)] = parse_extension(response)
        return list(response_params), StateroomDeflate(impl)


async def echo(connection: ServerConnection) -> None:
    """Send every received message back unchanged until the peer closes."""
    async for message in connection:
        await connection.send(message)


async def main(host: str, port: int, max_size: int, deflate_impl: str) -> None:
    """Serve until SIGINT or SIGTERM, then close the listener."""
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        host,
        port,
        max_size=max_size,
        max_queue=None,
        ping_interval=None,
        compression="deflate" if deflate_impl == "websockets" else None,
        extensions=[StateroomDeflateFactory()] if deflate_impl == "stateroom" else None,
    ):
        log.info("echo server listening on %s:%d", host, port)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--max-size", type=int, default=32 * 1024 * 1024)
    parser.add_argument("--deflate", choices=["websockets", "stateroom"], default="websockets")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    asyncio.run(main(args.host, args.port, args.max_size, args.deflate))
