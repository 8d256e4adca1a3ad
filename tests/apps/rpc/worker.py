"""RPC to Durable Objects: copies of arguments and results, property reads, pipelining,
stubs and RpcTargets by reference. Each path of the Worker runs one scenario and answers
with JSON of what it observed."""

import asyncio
import json
import threading

from stateroom import DataCloneError, DurableObject, Response, RpcTarget, WorkerEntrypoint
from stateroom.runtime.context import current_host

NOTES = []
RELEASE = {}


class Handle(RpcTarget):
    def __init__(self, counter):
        self.counter = counter

    def increment(self, by=1):
        self.counter.value += by
        return self.counter.value


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.value = 0
        self.kept = None

    def increment(self, by=1):
        self.value += by
        return self.value

    def get_counter(self):
        return Handle(self)

    def mutate(self, data):
        data["callee"] = True  # must not reach the caller's dict
        return data

    def keep(self, data):
        self.kept = data
        return data

    def peek(self):
        return self.kept

    def lock(self):
        return threading.Lock()  # cannot cross a process

    def shared(self):
        part = [1, 2]
        return {"a": part, "b": part}

    def fail(self):
        raise ValueError("the object's own error")

    def quit(self):
        self.ctx.abort("bye")

    async def ask(self, other):
        return await other.increment(10)

    # A callback passed to another object runs here, in this object's turn.
    def note(self, x):
        NOTES.append(f"note {x} ran in {current_host.get().id.name}")
        return len(NOTES)

    async def give(self, other):
        return await other.keep_callback(self.note)

    def keep_callback(self, callback):
        self.callback = callback
        return True

    async def fire(self, x):
        return await self.callback(x)

    async def hold(self):
        event = RELEASE["event"] = asyncio.Event()

        async def blocked():
            await event.wait()
            NOTES.append("hold ended")

        await self.ctx.blockConcurrencyWhile(blocked)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("://", 1)[1].partition("/")[2]
        ns = self.env.COUNTER
        stub = ns.getByName(path)
        out = {}
        if path == "copies":
            data = {"caller": True, "items": [1]}
            returned = await stub.mutate(data)
            out["caller_sees"] = data
            out["returned"] = returned
            kept = await stub.keep({"n": 1})
            kept["n"] = 2  # a copy: the object's stays 1
            out["object_kept"] = await stub.peek()
            shared = await stub.shared()
            out["shared_kept"] = shared["a"] is shared["b"]
        elif path == "refused":
            try:
                await stub.keep(threading.Lock())
            except DataCloneError as exc:
                out["argument"] = str(exc)
            try:
                await stub.lock()
            except DataCloneError as exc:
                out["result"] = str(exc)
            out["value_after"] = await stub.value
        elif path == "properties":
            await stub.increment(5)
            out["value"] = await stub.value
            out["missing"] = await stub.nothing_here
        elif path == "pipelining":
            out["first"] = await stub.get_counter().increment()
            out["second"] = await stub.get_counter().increment(2)
            out["value"] = await stub.value
            promise = stub.increment(100)
            out["twice"] = [await promise, await promise]
        elif path == "stubs":
            other = ns.getByName("other")
            out["asked"] = await stub.ask(other)
            out["other_value"] = await other.value
        elif path == "unawaited":
            stub.increment(5)  # never awaited: it runs all the same, as on Cloudflare
            out["value"] = await stub.value
        elif path == "owner-order":
            a, b = ns.getByName("owner-a"), ns.getByName("owner-b")
            NOTES.clear()
            await a.give(b)  # b now holds a callback of a's
            held = a.hold()  # a's input gate closes (blockConcurrencyWhile) until released
            await asyncio.sleep(0)
            fired = b.fire("x")  # b calls a's callback: it must wait for a's turn
            for _ in range(20):
                await asyncio.sleep(0)
            out["before_release"] = list(NOTES)
            RELEASE["event"].set()
            out["fired"] = await fired
            await held
            out["notes"] = NOTES
        elif path == "errors":
            await stub.increment(7)
            for name in ("fail", "quit"):
                try:
                    await getattr(stub, name)()
                except Exception as exc:
                    out[name] = [type(exc).__name__, str(exc), exc.remote, exc.retryable,
                                 exc.overloaded]  # fmt: skip
            out["value_after_abort"] = await stub.value  # a new instance
        return Response(json.dumps(out), headers={"Content-Type": "application/json"})
