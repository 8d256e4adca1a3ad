"""Limits and timeouts of the network server, with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServerOptions:
    # Largest WebSocket message accepted (Cloudflare's limit); larger ones close with 1009.
    max_message_size: int = 32 * 1024 * 1024
    # Largest request head (request line + headers); larger ones get 431.
    max_header_size: int = 480 * 1024
    # Most header lines in a request head; more get 431.
    max_headers: int = 2048
    # Longest request target; longer ones get 414 (workerd's limit).
    max_url_size: int = 65534
    # Largest request body; larger ones get 413 (read as a stream: bounded memory).
    max_body_size: int = 100 * 1024 * 1024
    # Open connections beyond this get 503 and are closed.
    max_connections: int = 10000
    # Seconds a client has to send a whole request (head and body) once it has started.
    header_timeout: float = 30.0
    # Seconds an idle keep-alive connection is kept open.
    keep_alive_timeout: float = 60.0
    # Seconds to wait for the peer's close frame after we sent ours.
    close_timeout: float = 5.0
    # Bytes queued for a client before we stop reading from it (backpressure).
    write_buffer_high: int = 1024 * 1024
    # A WebSocket client that keeps our queue above the high mark this long is dropped...
    send_timeout: float = 30.0
    # ...and so is one whose queue grows past this (e.g. a broadcast it does not read).
    max_send_buffer: int = 16 * 1024 * 1024
    # Seconds in-flight requests get to finish on shutdown.
    shutdown_grace: float = 10.0
    # Browser origins allowed to open WebSockets (None: any); from wrangler.toml.
    allowed_origins: tuple[str, ...] | None = None
    # `stateroom dev`: an uncaught exception answers 500 with its traceback (never in serve).
    debug_errors: bool = False
    # One log line per request on the ``stateroom.access`` logger (dev: on; serve: off).
    access_log: bool = False
    # permessage-deflate: messages shorter than this go uncompressed (0: every message,
    # as workerd; see README "Compression of small messages" for what that costs).
    compress_threshold: int = 64
