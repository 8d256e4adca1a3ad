"""A test app whose code raises: in a request, a WebSocket handler, an alarm."""

import time

from stateroom import DurableObject, Response, WebSocketPair, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("://", 1)[1].partition("/")[2].partition("?")[0]
        if path == "worker-boom":
            raise RuntimeError("the Worker <itself> & failed")
        if path == "ok":
            return Response("ok")
        if path == "reached-then-boom":
            await self.env.FAULTY.getByName("fine").fetch(request)
            raise RuntimeError("the Worker failed after the object answered")
        # /obj/NAME/ACTION: to the object named NAME.
        _, name, _action = path.split("/", 2)
        return await self.env.FAULTY.getByName(name).fetch(request)


class Faulty(DurableObject):
    async def fetch(self, request):
        action = request.url.split("://", 1)[1].partition("?")[0].rsplit("/", 1)[1]
        if action == "boom":
            raise ValueError("<script>alert('x')</script> broke")
        if action == "badbody":
            return Response({"a": 1})
        if action == "alarm":
            self.ctx.storage.setAlarm(int(time.time() * 1000) + 10)
            return Response("armed")
        if action == "hibernatable":
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server)
            return Response(None, status=101, web_socket=client)
        if action == "listener":
            client, server = WebSocketPair()
            server.accept()

            def on_message(event):
                raise KeyError("listener " + event.data)

            server.addEventListener("message", on_message)
            return Response(None, status=101, web_socket=client)
        return Response("ok " + action)

    async def webSocketMessage(self, ws, message):
        if message == "boom":
            raise LookupError("handler boom")
        ws.send(message)

    async def alarm(self):
        raise ArithmeticError("alarm boom")
