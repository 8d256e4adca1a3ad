"""``wrangler.toml``: the subset stateroom understands, validated with precise errors.

Every error names the file, the key and what is wrong, so the user can fix the
file without reading our source.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("stateroom.config")

CONFIG_NAME = "wrangler.toml"

# Keys wrangler knows that have no meaning for a self-hosted runtime: accepted silently.
_IGNORED_KEYS = {
    "compatibility_date",
    "compatibility_flags",
    "account_id",
    "workers_dev",
    "route",
    "routes",
    "observability",
    "placement",
    "limits",
    "build",
    "rules",
    "no_bundle",
    "minify",
    "env",
    "dev",
    "triggers",
    "upload_source_maps",
    "keep_vars",
    "preview_urls",
}


class ConfigError(Exception):
    """The configuration is invalid; the message says where and how to fix it."""


@dataclass(frozen=True)
class DurableObjectBinding:
    name: str
    class_name: str
    script_name: str | None = None


@dataclass(frozen=True)
class Migration:
    tag: str | None
    new_classes: tuple[str, ...] = ()
    new_sqlite_classes: tuple[str, ...] = ()
    renamed_classes: tuple[tuple[str, str], ...] = ()
    deleted_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkerConfig:
    path: Path
    name: str
    main: Path
    durable_objects: tuple[DurableObjectBinding, ...] = ()
    migrations: tuple[Migration, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    allowed_origins: tuple[str, ...] | None = None

    @property
    def root(self) -> Path:
        return self.path.parent

    def class_storage(self) -> dict[str, str]:
        """Live classes after all migrations, mapped to their storage kind ('kv' or 'sqlite')."""
        live: dict[str, str] = {}
        for m in self.migrations:
            for c in m.new_classes:
                live[c] = "kv"
            for c in m.new_sqlite_classes:
                live[c] = "sqlite"
            for old, new in m.renamed_classes:
                live[new] = live.pop(old, "kv")
            for c in m.deleted_classes:
                live.pop(c, None)
        return live


def _err(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: `{key}`: {problem}")


def _str(path: Path, table: dict[str, Any], key: str, where: str, required: bool = True) -> Any:
    if key not in table:
        if required:
            raise _err(path, f"{where}{key}", "is required")
        return None
    value = table[key]
    if not isinstance(value, str) or not value:
        raise _err(path, f"{where}{key}", f"expected a non-empty string, got {value!r}")
    return value


def _str_list(path: Path, table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(path, f"{where}{key}", f"expected a list of class names, got {value!r}")
    return tuple(value)


def _identifier(path: Path, key: str, value: str) -> None:
    if not value.isidentifier():
        raise _err(path, key, f"{value!r} is not a valid Python class name")


def load_config(location: str | Path) -> WorkerConfig:
    """Read ``wrangler.toml`` from a directory or a file path."""
    path = Path(location)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass the directory that holds your {CONFIG_NAME}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, path.resolve())


def parse_config(data: dict[str, Any], path: Path) -> WorkerConfig:
    for key in data:
        if key not in _IGNORED_KEYS and key not in (
            "name",
            "main",
            "durable_objects",
            "migrations",
            "vars",
            "allowed_origins",
        ):
            logger.warning("%s: unknown key `%s` ignored", path, key)

    name = _str(path, data, "name", "")
    main_value = _str(path, data, "main", "", required=False)
    if main_value is None:
        raise _err(
            path, "main", 'is required: the Python module of the Worker, e.g. main = "worker.py"'
        )
    main = (path.parent / main_value).resolve()
    if main.suffix != ".py":
        raise _err(path, "main", f"{main_value!r} must be a Python file ending in .py")
    if not main.is_file():
        raise _err(path, "main", f"{main_value!r} does not exist (looked at {main})")

    bindings: list[DurableObjectBinding] = []
    do_table = data.get("durable_objects", {})
    if not isinstance(do_table, dict):
        raise _err(path, "durable_objects", "expected a table")
    raw_bindings = do_table.get("bindings", [])
    if not isinstance(raw_bindings, list):
        raise _err(path, "durable_objects.bindings", "expected an array of tables [[...]]")
    seen: set[str] = set()
    for i, entry in enumerate(raw_bindings):
        where = f"durable_objects.bindings[{i}]."
        if not isinstance(entry, dict):
            raise _err(path, where.rstrip("."), "expected a table")
        bname = _str(path, entry, "name", where)
        cname = _str(path, entry, "class_name", where)
        _identifier(path, f"{where}name", bname)
        _identifier(path, f"{where}class_name", cname)
        script = _str(path, entry, "script_name", where, required=False)
        if script is not None and script != name:
            raise _err(
                path,
                f"{where}script_name",
                f"{script!r}: bindings to another Worker's classes are not supported; "
                "define the class in this Worker",
            )
        if bname in seen:
            raise _err(path, f"{where}name", f"binding {bname!r} is defined twice")
        seen.add(bname)
        bindings.append(DurableObjectBinding(bname, cname, script))

    migrations: list[Migration] = []
    raw_migrations = data.get("migrations", [])
    if not isinstance(raw_migrations, list):
        raise _err(path, "migrations", "expected an array of tables [[migrations]]")
    for i, entry in enumerate(raw_migrations):
        where = f"migrations[{i}]."
        if not isinstance(entry, dict):
            raise _err(path, where.rstrip("."), "expected a table")
        renamed: list[tuple[str, str]] = []
        for j, r in enumerate(entry.get("renamed_classes", [])):
            if (
                not isinstance(r, dict)
                or not isinstance(r.get("from"), str)
                or not isinstance(r.get("to"), str)
            ):
                raise _err(
                    path, f"{where}renamed_classes[{j}]", 'expected { from = "Old", to = "New" }'
                )
            renamed.append((r["from"], r["to"]))
        migrations.append(
            Migration(
                tag=_str(path, entry, "tag", where, required=False),
                new_classes=_str_list(path, entry, "new_classes", where),
                new_sqlite_classes=_str_list(path, entry, "new_sqlite_classes", where),
                renamed_classes=tuple(renamed),
                deleted_classes=_str_list(path, entry, "deleted_classes", where),
            )
        )

    vars_table = data.get("vars", {})
    if not isinstance(vars_table, dict):
        raise _err(path, "vars", "expected a table of names to values")
    for key in vars_table:
        if not key.isidentifier():
            raise _err(path, f"vars.{key}", "is not a valid attribute name for env")

    origins = data.get("allowed_origins")
    if origins is not None and (
        not isinstance(origins, list) or not all(isinstance(o, str) for o in origins)
    ):
        raise _err(
            path, "allowed_origins", 'expected a list of origins, e.g. ["https://a.example"]'
        )

    config = WorkerConfig(
        path=path,
        name=name,
        main=main,
        durable_objects=tuple(bindings),
        migrations=tuple(migrations),
        vars=dict(vars_table),
        allowed_origins=tuple(origins) if origins is not None else None,
    )
    live = config.class_storage()
    for i, b in enumerate(config.durable_objects):
        if b.class_name not in live:
            raise _err(
                path,
                f"durable_objects.bindings[{i}].class_name",
                f"class {b.class_name!r} has no migration; add "
                f'[[migrations]] tag = "v1" new_sqlite_classes = ["{b.class_name}"]',
            )
    return config
