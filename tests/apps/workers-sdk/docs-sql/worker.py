"""The API calls of Cloudflare's Python Durable Object announcement and "Getting started"
examples, in our own words: a synchronous fetch() reading a SQL row by attribute
(``row.greeting``), a constructor that sets ctx and env itself, an RPC method with a SQL
binding, and the module-level ``env``."""

from urllib.parse import urlparse

from workers import DurableObject, Response, WorkerEntrypoint, env


class MyDurableObject(DurableObject):
    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env

    def fetch(self, request):
        result = self.ctx.storage.sql.exec("SELECT 'Hello, World!' as greeting").one()
        return Response(result.greeting)

    async def say_hello(self, name):
        row = self.ctx.storage.sql.exec("SELECT 'Hello, ' || ? || '!' as greeting", name).one()
        return row.greeting


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        stub = env.MY_DURABLE_OBJECT.get(env.MY_DURABLE_OBJECT.idFromName(url.path))
        if url.path.startswith("/hello/"):
            return Response(await stub.say_hello(url.path.removeprefix("/hello/")))
        return await stub.fetch(request.url)
