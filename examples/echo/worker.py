"""A WebSocket echo server on one Durable Object: the testee of conformance/run.sh.

Every request goes to the single "echo" object, which accepts the WebSocket and sends each
message back unchanged: text as text (str), binary as binary (bytes). When the client closes,
the object answers with the same code and reason, which is what Autobahn|Testsuite expects of
an echo server. It is deliberately this small so that the test measures the runtime's
WebSocket implementation, not the application.
"""

from stateroom import (
    CloseEvent,
    DurableObject,
    Request,
    Response,
    WebSocketPair,
    WorkerEntrypoint,
)


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        stub = self.env.ECHO.get(self.env.ECHO.idFromName("echo"))
        return await stub.fetch(request)


class Echo(DurableObject):
    async def fetch(self, request: Request) -> Response:
        client, server = WebSocketPair()
        server.accept()

        def on_close(event: CloseEvent) -> None:
            server.close(event.code, event.reason)

        server.addEventListener("message", lambda event: server.send(event.data))
        server.addEventListener("close", on_close)
        return Response(None, status=101, web_socket=client)
