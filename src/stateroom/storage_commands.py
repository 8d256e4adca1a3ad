"""``stateroom storage``: list, read, query, export and import objects' stored data.

Run in a project's folder (or given it), reading the data location ``dev`` and
``serve`` use (``.stateroom/`` beside the config, or ``--persist-to``). Reads work
while a server runs on that data: they take a consistent snapshot from the files
and the commit log (``storage/snapshot.py``), never a lock. An object is named by
its 64-digit id or by the name a Worker gives ``idFromName``/``getByName``; with
more than one Durable Object class, ``--class`` says which.

    stateroom storage ls [-C DIR]                  objects, names, sizes, alarms
    stateroom storage get OBJECT [KEY]             KV values, decoded (JSON where possible)
    stateroom storage sql OBJECT "SELECT ..."      a read-only query
    stateroom storage export [OBJECT...] --to OUT  databases + manifest.json
    stateroom storage import --from IN             (server stopped) objects back
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stateroom.api.namespace import name_to_id
from stateroom.config import ConfigError, WorkerConfig, load_config
from stateroom.storage.encoding import DecodeError, decode
from stateroom.storage.snapshot import read_image, stored_namespaces
from stateroom.worker import namespace_secret

__all__ = ["add_parser", "run"]

logger = logging.getLogger("stateroom.storage")

_HEX_ID = re.compile(r"[0-9a-f]{64}")


def add_parser(sub: Any) -> None:
    """The ``storage`` subcommand and its own subcommands."""
    storage = sub.add_parser(
        "storage",
        help="list, read, query, export and import Durable Objects' stored data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = storage.add_subparsers(dest="action", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-C",
            "--project",
            dest="directory",
            default=".",
            metavar="DIR",
            help="the project's folder (default: .)",
        )
        p.add_argument("--persist-to", metavar="DIR", help="the data folder (default: .stateroom/)")
        p.add_argument("--env", help="a [env.NAME] section of the configuration")
        p.add_argument("--class", dest="class_name", help="the Durable Object class")

    ls = actions.add_parser("ls", help="objects with stored data")
    common(ls)
    get = actions.add_parser("get", help="KV values of one object, decoded")
    get.add_argument("object", help="the object's name or 64-digit id")
    get.add_argument("key", nargs="?", help="one key (default: every key)")
    common(get)
    sql = actions.add_parser("sql", help="a read-only SQL query on one object")
    sql.add_argument("object", help="the object's name or 64-digit id")
    sql.add_argument("query", help='e.g. "SELECT * FROM sqlite_master"')
    common(sql)
    export = actions.add_parser("export", help="copy objects' databases to a folder")
    export.add_argument("objects", nargs="*", help="names or ids (default: every object)")
    export.add_argument("--to", required=True, metavar="OUT", help="a new or empty folder")
    common(export)
    imp = actions.add_parser("import", help="load an export into the data folder")
    imp.add_argument("--from", dest="source", required=True, metavar="IN")
    imp.add_argument("--replace", action="store_true", help="overwrite objects that exist")
    common(imp)


def run(args: argparse.Namespace) -> int:
    try:
        project = _Project.open(args)
        if args.action == "ls":
            return project.ls()
        if args.action == "get":
            return project.get(args.object, args.key)
        if args.action == "sql":
            return project.sql(args.object, args.query)
        if args.action == "export":
            return project.export(args.objects, Path(args.to))
        return project.import_(Path(args.source), replace=args.replace)
    except (ConfigError, LookupError, ValueError, OSError, sqlite3.Error) as exc:
        logger.error("%s", exc)
        return 2


@dataclass
class _Project:
    config: WorkerConfig | None
    data_dir: Path
    class_name: str | None

    @classmethod
    def open(cls, args: argparse.Namespace) -> _Project:
        root = Path(args.directory)
        config: WorkerConfig | None = None
        try:
            config = load_config(root, args.env)
        except ConfigError:
            if not args.persist_to:
                raise
        data = Path(args.persist_to) if args.persist_to else root / ".stateroom"
        if config is not None and not args.persist_to:
            data = config.root / ".stateroom"
        return cls(config, data, args.class_name)

    # -- naming ------------------------------------------------------------------------

    def _classes(self) -> list[str]:
        found = set(stored_namespaces(self.data_dir))
        if self.config is not None:
            found.update(b.class_name for b in self.config.durable_objects)
        return sorted(found)

    def _class(self) -> str:
        if self.class_name is not None:
            return self.class_name
        classes = self._classes()
        if len(classes) == 1:
            return classes[0]
        raise LookupError(
            f"which Durable Object class? use --class with one of: {', '.join(classes) or '(none)'}"
        )

    def resolve(self, ref: str) -> tuple[str, str]:
        """(class, object id) of a name or id."""
        namespace = self._class()
        if _HEX_ID.fullmatch(ref):
            return namespace, ref
        if self.config is None:
            raise LookupError(f"{ref!r} is not a 64-digit id, and names need the project's config")
        return namespace, name_to_id(namespace_secret(self.config, namespace), ref)

    def _objects(self, namespace: str) -> list[str]:
        folder = self.data_dir / namespace
        return sorted(p.stem for p in folder.glob("*.sqlite3") if _HEX_ID.fullmatch(p.stem))

    def _image(self, namespace: str, object_id: str) -> bytes:
        image = read_image(self.data_dir, namespace, object_id)
        if image is None:
            raise LookupError(f"{namespace}/{object_id} has no stored data in {self.data_dir}")
        return image

    # -- commands -----------------------------------------------------------------------

    def ls(self) -> int:
        namespaces = [self.class_name] if self.class_name else stored_namespaces(self.data_dir)
        rows = []
        for namespace in namespaces:
            for object_id in self._objects(namespace):
                image = read_image(self.data_dir, namespace, object_id)
                if image is None:
                    continue
                with _database(image) as db:
                    rows.append(
                        {
                            "class": namespace,
                            "id": object_id,
                            "name": _meta(db, "name"),
                            "bytes": len(image),
                            "keys": _count(db, "_cf_KV"),
                            "alarm": _alarm(db),
                        }
                    )
        _print_rows(rows, ("class", "id", "name", "bytes", "keys", "alarm"))
        return 0

    def get(self, ref: str, key: str | None) -> int:
        namespace, object_id = self.resolve(ref)
        with _database(self._image(namespace, object_id)) as db:
            if _count(db, "_cf_KV") is None:
                pairs: list[tuple[str, bytes]] = []
            elif key is None:
                pairs = db.execute('SELECT key, value FROM "_cf_KV" ORDER BY key').fetchall()
            else:
                pairs = db.execute(
                    'SELECT key, value FROM "_cf_KV" WHERE key = ?', (key,)
                ).fetchall()
        if key is not None and not pairs:
            raise LookupError(f"{namespace}/{object_id} has no key {key!r}")
        for name, raw in pairs:
            _out(json.dumps({"key": name, "value": _decoded(raw)}, ensure_ascii=False))
        return 0

    def sql(self, ref: str, query: str) -> int:
        namespace, object_id = self.resolve(ref)
        with _database(self._image(namespace, object_id)) as db:
            cursor = db.execute(query)
            columns = [d[0] for d in cursor.description or ()]
            for row in cursor:
                _out(json.dumps(dict(zip(columns, map(_jsonable, row), strict=True))))
        return 0

    def export(self, refs: list[str], out: Path) -> int:
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"{out} is not empty: export into a new or empty folder")
        if refs:
            chosen = [self.resolve(ref) for ref in refs]
        else:
            chosen = [
                (ns, oid) for ns in stored_namespaces(self.data_dir) for oid in self._objects(ns)
            ]
        manifest = []
        for namespace, object_id in chosen:
            image = self._image(namespace, object_id)
            target = out / namespace / f"{object_id}.sqlite3"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(image)
            with _database(image) as db:
                name = _meta(db, "name")
            manifest.append(
                {"class": namespace, "id": object_id, "name": name, "bytes": len(image)}
            )
        (out / "manifest.json").write_text(
            json.dumps(
                {
                    "exported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "objects": manifest,
                },
                indent=2,
            )
            + "\n"
        )
        logger.info("exported %d objects to %s", len(manifest), out)
        return 0

    def import_(self, source: Path, *, replace: bool) -> int:
        from stateroom.storage.log_backend import LoggedSqliteBackend

        manifest = json.loads((source / "manifest.json").read_text())["objects"]
        # Opening the backend takes the data folder's lock (no server may run on it),
        # replays and checkpoints the log: no record can later overwrite what we write.
        backend = LoggedSqliteBackend(self.data_dir)
        try:
            for item in manifest:
                namespace, object_id = item["class"], item["id"]
                target = backend.path_for(namespace, object_id)
                if target.exists() and not replace:
                    raise ValueError(f"{namespace}/{object_id} exists (use --replace)")
                image = (source / namespace / f"{object_id}.sqlite3").read_bytes()
                with _database(image) as db:
                    check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise ValueError(f"{namespace}/{object_id} in {source} is damaged: {check}")
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".import")
                tmp.write_bytes(image)
                for suffix in ("-wal", "-shm"):
                    Path(f"{target}{suffix}").unlink(missing_ok=True)
                os.replace(tmp, target)
            backend.checkpoint_now()  # syncs the filesystem: the imported files are durable
        finally:
            backend.close()
        logger.info("imported %d objects into %s", len(manifest), self.data_dir)
        return 0


def _out(line: str) -> None:
    """Data goes to stdout (pipe it to jq); messages go to the log (stderr)."""
    sys.stdout.write(line + "\n")


class _database:
    """An object's image opened read-only in memory."""

    def __init__(self, image: bytes) -> None:
        self.conn = sqlite3.connect(":memory:")
        if len(image) >= 20 and image[18:20] == b"\x02\x02":
            # A WAL-mode file: in memory there is no WAL, so mark it a rollback-journal one.
            image = image[:18] + b"\x01\x01" + image[20:]
        self.conn.deserialize(image)
        self.conn.execute("PRAGMA query_only = ON")

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _count(db: sqlite3.Connection, table: str) -> int | None:
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,))
    if exists.fetchone() is None:
        return None
    return int(db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


def _meta(db: sqlite3.Connection, key: str) -> Any:
    if _count(db, "_stateroom_meta") is None:
        return None
    row = db.execute('SELECT value FROM "_stateroom_meta" WHERE key = ?', (key,)).fetchone()
    return None if row is None else row[0]


def _alarm(db: sqlite3.Connection) -> str | None:
    when = _meta(db, "alarm")
    if when is None:
        return None
    return datetime.datetime.fromtimestamp(int(when) / 1000, datetime.UTC).isoformat()


def _decoded(raw: bytes) -> Any:
    try:
        return _jsonable(decode(raw))
    except DecodeError as exc:
        return f"<undecodable: {exc}>"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _print_rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not sys.stdout.isatty():
        for row in rows:
            _out(json.dumps(row))
        return
    table = [
        columns,
        *[tuple("" if row[c] is None else str(row[c]) for c in columns) for row in rows],
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for line in _lines(table, widths):
        _out(line)


def _lines(table: list[tuple[str, ...]], widths: list[int]) -> Iterator[str]:
    for row in table:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
