"""Bare echo server on `websockets` (asyncio API) with uvloop: the bench peer.

Each text message comes back as "[Durable Object]: " + message, the same bytes the
stateroom example sends, on any path.
"""

from __future__ import annotations

import argparse

import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

PREFIX = "[Durable Object]: "


async def echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(PREFIX + message if isinstance(message, str) else message)
    except ConnectionClosed:
        pass  # the bench client resets connections at the end of a run


async def main(host: str, port: int) -> None:
    # No keepalive pings (the other peers send none either); 1 MiB messages at most.
    async with serve(echo, host, port, ping_interval=None, max_size=2**20, backlog=4096) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
