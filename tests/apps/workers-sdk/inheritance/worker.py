"""The API calls of workers-py's durable-object-inheritance test, in our own words.

ctx and env reach every ``__init__`` of a hierarchy wrapped exactly once
(``DurableObjectContext``, ``_EnvWrapper``), however deep it is and even when a class
names DurableObject or WorkerEntrypoint again among its bases.
"""

from workers import DurableObject, WorkerEntrypoint
from workers.entrypoints import DurableObjectContext
from workers.rpc import _EnvWrapper


def wrapped_once(obj):
    assert isinstance(obj.env, _EnvWrapper)
    assert not isinstance(obj.env._env, _EnvWrapper)
    if isinstance(obj, DurableObject):
        assert isinstance(obj.ctx, DurableObjectContext)
        assert not isinstance(obj.ctx._ctx, DurableObjectContext)


class Base(DurableObject):
    def __init__(self, ctx, env):
        assert isinstance(env, _EnvWrapper)
        assert isinstance(ctx, DurableObjectContext)
        super().__init__(ctx, env)
        wrapped_once(self)
        self.ctx.storage.sql.exec("SELECT NULL")

    async def shared(self):
        return "from base"


class Leaf(Base):
    async def hello(self):
        return "hello from leaf"

    async def check(self):
        wrapped_once(self)
        return True


class LeafWithInit(Base):
    def __init__(self, ctx, env):
        assert isinstance(ctx, DurableObjectContext)
        super().__init__(ctx, env)
        wrapped_once(self)
        self.custom = "custom"

    async def hello(self):
        return f"hello with init ({self.custom})"

    async def check(self):
        wrapped_once(self)
        return True


class Redundant(Base, DurableObject):
    async def hello(self):
        return "hello from redundant"

    async def check(self):
        wrapped_once(self)
        return True


class BaseEntrypoint(WorkerEntrypoint):
    def get_name(self):
        return "base"


class RedundantEntrypoint(BaseEntrypoint, WorkerEntrypoint):
    def get_name(self):
        return "redundant"


class Default(RedundantEntrypoint):
    async def test(self, ctrl):
        x = _EnvWrapper(object())
        assert _EnvWrapper(x) is x
        y = DurableObjectContext(object())
        assert DurableObjectContext(y) is y
        wrapped_once(self)
        assert self.get_name() == "redundant"
        for binding, greeting in (
            ("LEAF", "hello from leaf"),
            ("LEAF_INIT", "hello with init (custom)"),
            ("REDUNDANT", "hello from redundant"),
        ):
            stub = self.env[binding].getByName("x")
            assert await stub.hello() == greeting
            assert await stub.shared() == "from base"
            assert await stub.check()
