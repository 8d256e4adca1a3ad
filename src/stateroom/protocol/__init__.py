"""Sans-I/O protocol core: WebSocket framing and handshake, with no sockets in sight."""
