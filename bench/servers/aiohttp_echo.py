"""Bare echo server on aiohttp with uvloop: the bench peer.

Each text message comes back as "[Durable Object]: " + message, on any path.
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import WSMsgType, web

PREFIX = "[Durable Object]: "


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=2**20)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(PREFIX + msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(
        build_app(),
        host=args.host,
        port=args.port,
        backlog=4096,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
