"""``[[migrations]]`` on stored data, over real sockets: ``renamed_classes`` hands a class's
objects to its new name, ``deleted_classes`` deletes a class's objects and their data."""

from __future__ import annotations

from pathlib import Path

from support import fetch, serve

WORKER = """
from stateroom import DurableObject, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        binding, _, rest = request.url.split("://", 1)[1].partition("/")[2].partition("/")
        return await getattr(self.env, binding).getByName("one").fetch(request)


class Store(DurableObject):
    async def fetch(self, request):
        value = request.url.rpartition("?")[2]
        if value and "?" in request.url:
            await self.ctx.storage.put("v", value)
        return Response(str(await self.ctx.storage.get("v")))


class Keep(Store):
    pass


class Kept(Store):
    pass


class Doomed(Store):
    pass
"""

BEFORE = """
name = "migrations"
main = "worker.py"
[[durable_objects.bindings]]
name = "KEEP"
class_name = "Keep"
[[durable_objects.bindings]]
name = "DOOMED"
class_name = "Doomed"
[[migrations]]
tag = "v1"
new_sqlite_classes = ["Keep", "Doomed"]
"""

AFTER = """
name = "migrations"
main = "worker.py"
[[durable_objects.bindings]]
name = "KEPT"
class_name = "Kept"
[[migrations]]
tag = "v1"
new_sqlite_classes = ["Keep", "Doomed"]
[[migrations]]
tag = "v2"
renamed_classes = [{ from = "Keep", to = "Kept" }]
deleted_classes = ["Doomed"]
"""


def test_renamed_classes_keep_their_data_and_deleted_classes_lose_it(tmp_path: Path) -> None:
    app, data = tmp_path / "app", tmp_path / "data"
    app.mkdir()
    (app / "worker.py").write_text(WORKER)
    (app / "wrangler.toml").write_text(BEFORE)
    with serve(app, "--persist-to", str(data)) as srv:
        assert fetch(srv, "/KEEP/x?kept-value") == (200, "kept-value")
        assert fetch(srv, "/DOOMED/x?doomed-value") == (200, "doomed-value")
    assert (data / "Doomed").is_dir() and (data / "Keep").is_dir()

    (app / "wrangler.toml").write_text(AFTER)
    with serve(app, "--persist-to", str(data)) as srv:
        assert fetch(srv, "/KEPT/x") == (200, "kept-value")  # renamed: same object, same data
        srv.wait_for_log(r"deleted 1 stored objects of Doomed \(deleted_classes in migration v2\)")
        srv.wait_for_log(r"storage of Keep now belongs to Kept")
    assert not (data / "Doomed").exists() and not (data / "Keep").exists()
    assert not any(p.name.startswith(".deleting") for p in data.iterdir())
