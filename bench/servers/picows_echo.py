"""Bare echo server on picows with uvloop: the bench peer.

Each text message comes back as "[Durable Object]: " + message, on any path. picows
hands over frames, not messages; the bench client sends every message in one frame.
"""

from __future__ import annotations

import argparse

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

PREFIX = b"[Durable Object]: "


class EchoListener(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            transport.send(WSMsgType.TEXT, PREFIX + frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.BINARY:
            transport.send(WSMsgType.BINARY, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


def listener_factory(_request: WSUpgradeRequest) -> WSListener:
    return EchoListener()


async def main(host: str, port: int) -> None:
    server = await ws_create_server(
        listener_factory, host, port, max_frame_size=2**20, backlog=4096
    )
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
