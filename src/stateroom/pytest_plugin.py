"""stateroom's pytest plugin: test a Worker and its Durable Objects, in process.

Installed with stateroom (the ``pytest11`` entry point ``stateroom``), so any project
with stateroom installed has its fixtures. Name the application's folder (the one with
``wrangler.toml`` or ``wrangler.jsonc``) with a marker, an ini option, or by overriding
the ``stateroom_app_dir`` fixture::

    # pyproject.toml:  [tool.pytest.ini_options]  stateroom_app = "."

    from stateroom.testing import run_alarm, run_in_durable_object

    @pytest.mark.stateroom_app("examples/websocket-server")
    async def test_echo(stateroom_app):
        ws = await stateroom_app.websocket("/websocket")
        ws.send("hi")
        assert await ws.receive() == "[Durable Object]: hi"

The plugin runs ``async def`` tests that use its fixtures itself, on a new event loop per
test whose clock the ``stateroom_clock`` fixture moves (``VirtualTimeLoop``); no other
async plugin is needed. Each test loads the application afresh, with its own storage:
in memory by default, or wherever an overridden ``stateroom_backend`` fixture puts it.

Fixtures:

``stateroom_app``
    a ``TestClient`` on the application, entered for the test (``fetch``, ``websocket``,
    ``env``).
``stateroom_server``
    the same application served on a free port of 127.0.0.1 by stateroom's own server
    (``url``, ``ws_url``, ``port``; ``client`` is the ``stateroom_app`` behind it), for
    tests with real HTTP and WebSocket clients. Those must be asynchronous clients: the
    server runs on the test's event loop.
``stateroom_clock``
    the test's ``VirtualTimeLoop``: ``await stateroom_clock.advance(seconds)`` fires the
    alarms, evictions and hibernations due by then, without waiting.
``stateroom_app_dir``, ``stateroom_options``, ``stateroom_backend``
    the application's folder, its ``RuntimeOptions`` and its storage backend: override
    them to configure the others.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    # Imported where used: a pytest run that uses no stateroom fixture loads none of it.
    from stateroom.runtime.options import RuntimeOptions
    from stateroom.storage.backend import StorageBackend
    from stateroom.testing import TestClient, VirtualTimeLoop

logger = logging.getLogger("stateroom.testing")

_MARKER = "stateroom_app"
_INI = "stateroom_app"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _INI,
        "the folder of the Worker the stateroom fixtures load (relative to the rootdir)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stateroom_app(path): the folder of the Worker the stateroom fixtures load "
        "(relative to the test file's folder, else to the rootdir)",
    )


class ServedApp:
    """An application served on a free port by stateroom's server, for one test."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def _start(self, stack: AsyncExitStack) -> None:
        from stateroom.server.server import Server

        events = self.client._events()
        server = self._server = Server(events, host=self.host, port=0)
        await server.start()
        self.port = server.port
        # The server's shutdown closes its connections (1001), then the runtime; the
        # TestClient, which exits after it, finds the runtime already shut down.
        stack.push_async_callback(server.shutdown)


class _TestState:
    """What one test's fixtures share: its client, its server, its loop."""

    def __init__(self) -> None:
        self.client: TestClient | None = None
        self.server: ServedApp | None = None
        self.loop: VirtualTimeLoop | None = None


_STATE = pytest.StashKey[_TestState]()


def _state(request: pytest.FixtureRequest) -> _TestState:
    stash: pytest.Stash = request.node.stash
    state = stash.get(_STATE, None)
    if state is None:
        state = stash[_STATE] = _TestState()
    return state


@pytest.fixture
def stateroom_app_dir(request: pytest.FixtureRequest) -> Path:
    """The application's folder: the ``stateroom_app`` marker's, else the ini option's."""
    marker = request.node.get_closest_marker(_MARKER)
    if marker is not None:
        if not marker.args:
            raise pytest.UsageError("@pytest.mark.stateroom_app needs the app's folder")
        path = Path(marker.args[0])
        if not path.is_absolute():
            here = Path(str(request.node.path)).parent / path
            path = here if here.exists() else request.config.rootpath / path
        return path
    value = request.config.getini(_INI)
    if value:
        return request.config.rootpath / str(value)
    raise pytest.UsageError(
        "stateroom: which application? Mark the test @pytest.mark.stateroom_app('DIR'), "
        "set `stateroom_app = DIR` in the pytest ini options, or override the "
        "stateroom_app_dir fixture"
    )


@pytest.fixture
def stateroom_options() -> RuntimeOptions:
    """The runtime's timeouts for the test (override to shorten or lengthen them)."""
    from stateroom.runtime.options import RuntimeOptions

    return RuntimeOptions()


@pytest.fixture
def stateroom_backend() -> Iterator[StorageBackend]:
    """A fresh storage backend per test: in memory, discarded after the test.

    Override it for files, e.g. ``SqliteBackend(tmp_path / "data")``.
    """
    from stateroom.storage.sqlite import SqliteBackend

    backend = SqliteBackend(in_memory=True)
    yield backend
    backend.close()


@pytest.fixture
def stateroom_app(
    request: pytest.FixtureRequest,
    stateroom_app_dir: Path,
    stateroom_options: RuntimeOptions,
    stateroom_backend: StorageBackend,
) -> TestClient:
    """The application in process (a ``TestClient``), loaded and entered for the test."""
    from stateroom.testing import TestClient

    state = _state(request)
    state.client = TestClient(
        stateroom_app_dir, options=stateroom_options, backend=stateroom_backend
    )
    return state.client


@pytest.fixture
def stateroom_server(request: pytest.FixtureRequest, stateroom_app: TestClient) -> ServedApp:
    """The application served on a free port of 127.0.0.1 (the ``stateroom_app`` behind)."""
    state = _state(request)
    state.server = ServedApp(stateroom_app)
    return state.server


@pytest.fixture
def stateroom_clock(request: pytest.FixtureRequest) -> Iterator[VirtualTimeLoop]:
    """The test's event loop, whose clock ``await stateroom_clock.advance(s)`` moves."""
    from stateroom.testing import VirtualTimeLoop

    state = _state(request)
    loop = state.loop = VirtualTimeLoop()
    yield loop
    if not loop.is_closed():  # the test never ran (skipped, or an earlier fixture failed)
        loop.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses the stateroom fixtures on its own loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    state = pyfuncitem.stash.get(_STATE, None)
    if state is None:
        return None  # not ours: another plugin's (or pytest's refusal)
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    from stateroom.testing import run_with_virtual_time

    async def main(loop: VirtualTimeLoop) -> None:
        async with AsyncExitStack() as stack:
            if state.client is not None:
                await stack.enter_async_context(state.client)
            if state.server is not None:
                await state.server._start(stack)
            await pyfuncitem.obj(**kwargs)

    run_with_virtual_time(main, loop=state.loop)
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse a synchronous test asking for a fixture that needs the test's event loop."""
    if isinstance(item, pytest.Function) and not inspect.iscoroutinefunction(item.obj):
        wanted = {"stateroom_app", "stateroom_server", "stateroom_clock"}
        used = wanted & set(item.fixturenames)
        if used:
            pytest.fail(
                f"{item.nodeid}: {', '.join(sorted(used))} need an `async def` test "
                "(the stateroom plugin runs it on the application's event loop)",
                pytrace=False,
            )
