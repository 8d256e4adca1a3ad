"""Wrangler configuration: the subset stateroom understands, validated with precise errors.

The file is ``wrangler.json``, ``wrangler.jsonc`` or ``wrangler.toml`` (looked for in that
order, as wrangler does); the JSON forms may have comments and trailing commas.
``[env.NAME]`` sections are chosen with ``--env NAME``, with wrangler's inheritance rules.
Secrets come from ``.dev.vars`` (``.dev.vars.NAME`` for an environment) and, for the
names in ``secrets.required`` (or every name, with ``CLOUDFLARE_INCLUDE_PROCESS_ENV=true``),
from the process environment; they join ``vars`` on ``env``.

Every error names the file, the key and what is wrong, so the user can fix the
file without reading our source. Keys stateroom does not know are logged and ignored.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stateroom import jsonc

logger = logging.getLogger("stateroom.config")

CONFIG_NAME = "wrangler.toml"
# Wrangler's own order of preference when a folder has more than one.
CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
DEV_VARS = ".dev.vars"
# Wrangler's switch for taking secrets from the whole process environment.
INCLUDE_PROCESS_ENV = "CLOUDFLARE_INCLUDE_PROCESS_ENV"

# Keys that an [env.NAME] section does not inherit from the top level (wrangler's
# "non-inheritable" keys: bindings and vars must be repeated per environment).
_NON_INHERITABLE = {
    "vars",
    "durable_objects",
    "secrets",
    "kv_namespaces",
    "r2_buckets",
    "d1_databases",
    "services",
    "queues",
    "analytics_engine_datasets",
    "vectorize",
    "hyperdrive",
    "ai",
    "browser",
    "images",
    "workflows",
    "send_email",
    "dispatch_namespaces",
    "mtls_certificates",
    "tail_consumers",
    "version_metadata",
    "unsafe",
    "define",
}

# Bindings that stateroom does not provide: configuring one is logged, not fatal, and
# the name is missing from env.
_UNSUPPORTED_BINDINGS = _NON_INHERITABLE - {"vars", "durable_objects", "secrets", "define"}

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
    "upload_source_maps",
    "keep_vars",
    "preview_urls",
    "$schema",
    "python_modules",
    "assets",
    "tsconfig",
    "node_compat",
    "send_metrics",
    "logpush",
    "first_party_worker",
    "jsx_factory",
    "jsx_fragment",
    "base_dir",
    "find_additional_modules",
    "preserve_file_names",
    "alias",
    "legacy_env",
    "unsafe",
    "define",
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
    # The [env.NAME] section in use (--env), and the names on env that came from
    # .dev.vars or the process environment (their values are in vars; never logged).
    env_name: str | None = None
    secret_names: tuple[str, ...] = ()
    # triggers.crons: when the Worker's scheduled() runs (UTC), as on Cloudflare.
    crons: tuple[str, ...] = ()

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

    def class_origins(self) -> dict[str, str]:
        """Live classes mapped to the name they were created under: a renamed class keeps
        its objects' ids (derived from that name), as a renamed class does on Cloudflare."""
        origin: dict[str, str] = {}
        for m in self.migrations:
            for c in (*m.new_classes, *m.new_sqlite_classes):
                origin[c] = c
            for old, new in m.renamed_classes:
                origin[new] = origin.pop(old, old)
            for c in m.deleted_classes:
                origin.pop(c, None)
        return origin


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


def find_config(location: str | Path) -> Path:
    """The configuration file of a folder (or the file itself, if ``location`` is one)."""
    path = Path(location)
    if not path.is_dir():
        if not path.is_file():
            raise ConfigError(
                f"{path}: no such file; pass the directory that holds your "
                f"wrangler.jsonc, wrangler.json or {CONFIG_NAME}"
            )
        return path
    found = [path / name for name in CONFIG_NAMES if (path / name).is_file()]
    if not found:
        raise ConfigError(
            f"{path / CONFIG_NAME}: no such file; pass the directory that holds your "
            f"wrangler.jsonc, wrangler.json or {CONFIG_NAME}"
        )
    for other in found[1:]:
        logger.warning("%s: ignored, %s is read instead (as wrangler does)", other, found[0].name)
    return found[0]


def read_config_file(path: Path) -> dict[str, Any]:
    """The configuration as a dict: TOML, or JSON with comments (.json and .jsonc)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        data = jsonc.loads(text)
    except jsonc.JSONCError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object {{ ... }} at the top level")
    return data


def load_config(
    location: str | Path,
    env: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    require_secrets: bool = False,
) -> WorkerConfig:
    """Read the Worker's configuration from a directory or a file path.

    ``env`` selects an ``[env.NAME]`` section. ``environ`` (default ``os.environ``) is
    where secrets are looked up; with ``require_secrets`` a name in ``secrets.required``
    that has no value is an error, otherwise a warning (as ``wrangler dev`` does).
    """
    path = find_config(location)
    data = select_env(read_config_file(path), env, path)
    path = path.resolve()
    secrets = load_secrets(
        data, path, env, os.environ if environ is None else environ, require_secrets
    )
    return parse_config(data, path, env_name=env, secrets=secrets)


def select_env(data: dict[str, Any], env: str | None, path: Path) -> dict[str, Any]:
    """The top-level configuration, or the ``env.NAME`` section over it.

    An environment inherits every top-level key except bindings and vars
    (``_NON_INHERITABLE``); its name is ``<name>-<env>`` unless it sets one.
    """
    if env is None:
        return data
    sections = data.get("env", {})
    if not isinstance(sections, dict):
        raise _err(path, "env", "expected a table of environments ([env.NAME])")
    section = sections.get(env)
    if not isinstance(section, dict):
        known = ", ".join(sorted(sections)) or "none"
        raise _err(path, f"env.{env}", f"no such environment (--env {env}); environments: {known}")
    merged = {k: v for k, v in data.items() if k != "env" and k not in _NON_INHERITABLE}
    for key in sorted(_NON_INHERITABLE & data.keys() - section.keys()):
        logger.warning(
            "%s: `%s` is not inherited by [env.%s] (wrangler does not inherit it either); "
            "repeat it in the environment to use it there",
            path,
            key,
            env,
        )
    merged.update(section)
    if "name" not in section and isinstance(data.get("name"), str):
        merged["name"] = f"{data['name']}-{env}"
    return merged


def parse_dotenv(text: str, path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``.dev.vars``): ``#`` comments, optional ``export``, values
    in single quotes (literal) or double quotes (with ``\\n`` escapes, may span lines)."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        lineno = i + 1
        i += 1
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(f"{path}:{lineno}: expected NAME=value, got {lines[lineno - 1]!r}")
        value = value.strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            body = value[1:]
            while quote not in body.replace("\\" + quote, "") and i < len(lines):
                body += "\n" + lines[i]
                i += 1
            end = _closing_quote(body, quote)
            if end == -1:
                raise ConfigError(f"{path}:{lineno}: {name}: unterminated {quote}-quoted value")
            value = body[:end] if quote == "'" else _unescape(body[:end])
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append(_ESCAPES.get(nxt, c + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _closing_quote(body: str, quote: str) -> int:
    i = 0
    while i < len(body):
        if body[i] == "\\" and quote == '"':
            i += 2
            continue
        if body[i] == quote:
            return i
        i += 1
    return -1


def load_secrets(
    data: dict[str, Any],
    path: Path,
    env: str | None,
    environ: Mapping[str, str],
    require: bool,
) -> dict[str, str]:
    """Secrets for ``env``: ``.dev.vars`` (``.dev.vars.<env>`` first) next to the config,
    then the process environment, which wins.

    With ``secrets.required`` only those names are taken (from either source), and each
    must have a value. Without it, every name in the file is taken, and the process
    environment only with ``CLOUDFLARE_INCLUDE_PROCESS_ENV=true`` (wrangler's rules).
    """
    root = path.parent
    dev_vars: dict[str, str] = {}
    candidates = [root / f"{DEV_VARS}.{env}"] if env else []
    for candidate in [*candidates, root / DEV_VARS]:
        if candidate.is_file():
            dev_vars = parse_dotenv(candidate.read_text(encoding="utf-8"), candidate)
            logger.info("secrets from %s: %s", candidate.name, ", ".join(sorted(dev_vars)))
            break
    required = _required_secrets(data, path)
    include_all = environ.get(INCLUDE_PROCESS_ENV, "").lower() == "true"
    if required is None:
        secrets = dict(dev_vars)
        if include_all:
            secrets.update({k: v for k, v in environ.items() if k.isidentifier()})
        return secrets
    secrets = {}
    for name in required:
        if name in environ:
            secrets[name] = environ[name]
        elif name in dev_vars:
            secrets[name] = dev_vars[name]
    missing = [name for name in required if name not in secrets]
    if missing:
        message = (
            f"{path}: `secrets.required`: no value for {', '.join(missing)}; set them in the "
            f"environment or in {DEV_VARS} next to the configuration"
        )
        if require:
            raise ConfigError(message)
        logger.warning("%s", message)
    return secrets


def _required_secrets(data: dict[str, Any], path: Path) -> list[str] | None:
    table = data.get("secrets")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise _err(path, "secrets", 'expected a table, e.g. { "required": ["API_KEY"] }')
    names = table.get("required", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise _err(path, "secrets.required", f"expected a list of names, got {names!r}")
    for name in names:
        if not name.isidentifier():
            raise _err(path, "secrets.required", f"{name!r} is not a valid attribute name for env")
    return list(names)


def _crons(data: dict[str, Any], path: Path) -> tuple[str, ...]:
    """``triggers.crons``: cron expressions (5 fields, UTC), each checked here."""
    from stateroom.runtime.cron import CronError, parse_cron

    table = data.get("triggers")
    if table is None:
        return ()
    if not isinstance(table, dict):
        raise _err(path, "triggers", 'expected a table, e.g. { "crons": ["0 * * * *"] }')
    crons = table.get("crons", [])
    if not isinstance(crons, list) or not all(isinstance(c, str) for c in crons):
        raise _err(path, "triggers.crons", f"expected a list of cron expressions, got {crons!r}")
    for i, expression in enumerate(crons):
        try:
            parse_cron(expression)
        except CronError as exc:
            raise _err(path, f"triggers.crons[{i}]", str(exc)) from None
    return tuple(crons)


def parse_config(
    data: dict[str, Any],
    path: Path,
    *,
    env_name: str | None = None,
    secrets: Mapping[str, str] | None = None,
) -> WorkerConfig:
    for key in data:
        if key in _UNSUPPORTED_BINDINGS:
            logger.warning(
                "%s: `%s`: stateroom does not provide this kind of binding; ignored "
                "(env will not have it)",
                path,
                key,
            )
        elif key not in _IGNORED_KEYS and key not in (
            "name",
            "main",
            "durable_objects",
            "migrations",
            "vars",
            "allowed_origins",
            "secrets",
            "triggers",
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

    all_vars = dict(vars_table)
    for key in secrets or {}:
        if key in all_vars:
            logger.info("%s: secret %s overrides the var of the same name", path, key)
        if key in seen:
            raise ConfigError(
                f"{path}: secret {key} has the name of a Durable Object binding; rename one"
            )
    all_vars.update(secrets or {})
    config = WorkerConfig(
        path=path,
        name=name,
        main=main,
        durable_objects=tuple(bindings),
        migrations=tuple(migrations),
        vars=all_vars,
        allowed_origins=tuple(origins) if origins is not None else None,
        env_name=env_name,
        secret_names=tuple(sorted(secrets or {})),
        crons=_crons(data, path),
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
