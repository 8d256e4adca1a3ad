"""The network server: HTTP/1.1 and WebSocket over asyncio, feeding the runtime."""
