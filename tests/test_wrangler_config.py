"""wrangler.jsonc / wrangler.json / wrangler.toml, [env.NAME], .dev.vars and secrets.

The reader and the loader are tested directly; what reaches a Worker's ``env`` is tested
over real sockets with ``stateroom serve`` and ``stateroom dev``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stateroom import jsonc
from stateroom.config import ConfigError, load_config, parse_dotenv
from support import ROOT, fetch, serve

APP = ROOT / "tests" / "apps" / "wrangler-env"


# -- the JSONC reader -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ('// first\n{"a": 1} // last', {"a": 1}),
        ('{/* c */"a": /* c */ 1 /* c */}', {"a": 1}),
        ('{"url": "https://x.test//y"}', {"url": "https://x.test//y"}),
        ('{"s": "/* not a comment */"}', {"s": "/* not a comment */"}),
        ('{"s": "// nor this"}', {"s": "// nor this"}),
        ('{"q": "a \\" // b"}', {"q": 'a " // b'}),
        ('{"q": "ends in a backslash \\\\"} // c', {"q": "ends in a backslash \\"}),
        ('{"a": [1, 2,], "b": {"c": 3,},}', {"a": [1, 2], "b": {"c": 3}}),
        ('{"a": [1, 2, // two\n],\n}', {"a": [1, 2]}),
        ('{"a": [1 /* , */ ,]}', {"a": [1]}),
        ('\ufeff{"bom": true}', {"bom": True}),
        ('{"multi": 1 /* over\nlines */}', {"multi": 1}),
    ],
)
def test_jsonc_reads(text: str, value: object) -> None:
    assert jsonc.loads(text) == value


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("[,]", 1, 2),
        ("[1,,]", 1, 4),
        ('{"a": 1,, }', 1, 9),
        ("{\n  /* unterminated", 2, 3),
        ('{\n  // fine\n  "a": nope\n}', 3, 8),
        ("{'single': 1}", 1, 2),
    ],
)
def test_jsonc_errors_point_into_the_file(text: str, line: int, column: int) -> None:
    with pytest.raises(jsonc.JSONCError) as info:
        jsonc.loads(text)
    assert (info.value.lineno, info.value.colno) == (line, column)
    assert f"line {line}, column {column}" in str(info.value)


def test_jsonc_keeps_line_numbers() -> None:
    text = '{\n/* a\n b */ "x": 1, // c\n"y": 2}'
    assert jsonc.strip(text).count("\n") == text.count("\n")


# -- finding and loading the configuration ----------------------------------------------


def write_app(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    (folder / "worker.py").write_text("")
    return folder


@pytest.mark.parametrize("name", ["wrangler.json", "wrangler.jsonc"])
def test_json_configs(tmp_path: Path, name: str) -> None:
    write_app(
        tmp_path,
        name,
        '{\n  // comment\n  "name": "app", "main": "worker.py",\n'
        '  "vars": {"A": "b"},\n'
        '  "durable_objects": {"bindings": [{"name": "R", "class_name": "Room"}]},\n'
        '  "migrations": [{"tag": "v1", "new_sqlite_classes": ["Room"]}],\n}\n',
    )
    config = load_config(tmp_path, environ={})
    assert config.path == (tmp_path / name).resolve()
    assert (config.name, config.vars) == ("app", {"A": "b"})
    assert config.class_storage() == {"Room": "sqlite"}


def test_wrangler_order_of_preference(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_app(tmp_path, "wrangler.toml", 'name = "toml"\nmain = "worker.py"\n')
    write_app(tmp_path, "wrangler.jsonc", '{"name": "jsonc", "main": "worker.py"}')
    assert load_config(tmp_path, environ={}).name == "jsonc"
    write_app(tmp_path, "wrangler.json", '{"name": "json", "main": "worker.py"}')
    with caplog.at_level(logging.WARNING, "stateroom.config"):
        assert load_config(tmp_path, environ={}).name == "json"
    assert "wrangler.toml: ignored, wrangler.json is read instead" in caplog.text
    assert "wrangler.jsonc: ignored" in caplog.text
    # A file path picks that file.
    assert load_config(tmp_path / "wrangler.toml", environ={}).name == "toml"


def test_json_errors_name_the_file(tmp_path: Path) -> None:
    write_app(tmp_path, "wrangler.jsonc", '{\n  "name": "a",\n  "main": worker.py\n}')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert str(tmp_path / "wrangler.jsonc") in str(info.value)
    assert "invalid JSON" in str(info.value) and "line 3" in str(info.value)
    write_app(tmp_path, "wrangler.jsonc", "[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_config(tmp_path, environ={})
    (tmp_path / "wrangler.jsonc").unlink()
    with pytest.raises(
        ConfigError, match=re.escape("wrangler.jsonc, wrangler.json or wrangler.toml")
    ):
        load_config(tmp_path, environ={})


def test_unknown_keys_and_bindings_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_app(
        tmp_path,
        "wrangler.jsonc",
        '{"name": "a", "main": "worker.py", "kv_namespaces": [{"binding": "K", "id": "1"}],'
        ' "d1_databases": [], "brand_new_setting": 1, "$schema": "x", "observability": {}}',
    )
    with caplog.at_level(logging.WARNING, "stateroom.config"):
        config = load_config(tmp_path, environ={})
    assert config.name == "a"
    assert "unknown key `brand_new_setting` ignored" in caplog.text
    assert "`kv_namespaces`: stateroom does not provide this kind of binding" in caplog.text
    assert "`d1_databases`" in caplog.text
    assert "$schema" not in caplog.text and "observability" not in caplog.text


def test_main_in_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("")
    (tmp_path / "wrangler.jsonc").write_text('{"name": "a", "main": "src/entry.py"}')
    assert load_config(tmp_path, environ={}).main == (tmp_path / "src" / "entry.py").resolve()


# -- [env.NAME] -------------------------------------------------------------------------

ENVS = """
name = "app"
main = "worker.py"
allowed_origins = ["https://a.test"]

[vars]
LEVEL = "top"

[[durable_objects.bindings]]
name = "ROOMS"
class_name = "Room"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Room"]

[env.staging]
name = "app-staging-custom"

[env.staging.vars]
LEVEL = "staging"

[[env.staging.durable_objects.bindings]]
name = "ROOMS"
class_name = "Room"

[env.bare]
allowed_origins = ["https://b.test"]
"""


def test_env_sections(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_app(tmp_path, "wrangler.toml", ENVS)
    top = load_config(tmp_path, environ={})
    assert (top.name, top.vars, top.env_name) == ("app", {"LEVEL": "top"}, None)
    staging = load_config(tmp_path, "staging", environ={})
    assert (staging.name, staging.vars, staging.env_name) == (
        "app-staging-custom",
        {"LEVEL": "staging"},
        "staging",
    )
    assert [b.name for b in staging.durable_objects] == ["ROOMS"]
    assert staging.allowed_origins == ("https://a.test",)  # inherited
    assert staging.main == top.main  # inherited
    with caplog.at_level(logging.WARNING, "stateroom.config"):
        bare = load_config(tmp_path, "bare", environ={})
    # Not inherited, as in wrangler: vars and bindings belong to one environment.
    assert (bare.name, bare.vars, bare.durable_objects) == ("app-bare", {}, ())
    assert bare.allowed_origins == ("https://b.test",)
    assert "`vars` is not inherited by [env.bare]" in caplog.text
    assert "`durable_objects` is not inherited by [env.bare]" in caplog.text
    with pytest.raises(ConfigError, match=r"`env.nope`: no such environment .*bare, staging"):
        load_config(tmp_path, "nope", environ={})


# -- secrets ----------------------------------------------------------------------------


def test_parse_dotenv() -> None:
    text = (
        "# a comment\n"
        "A=1\n"
        "export B = two words # trailing comment\n"
        'C="line\\nbreak \\"quoted\\" \\\\n"\n'
        "D='literal \\n # kept'\n"
        'E="multi\nline"\n'
        "F=\n"
        "\n"
    )
    assert parse_dotenv(text, Path(".dev.vars")) == {
        "A": "1",
        "B": "two words",
        "C": 'line\nbreak "quoted" \\n',
        "D": "literal \\n # kept",
        "E": "multi\nline",
        "F": "",
    }
    with pytest.raises(ConfigError, match=r"\.dev\.vars:2: expected NAME=value"):
        parse_dotenv("A=1\nnot a pair\n", Path(".dev.vars"))
    with pytest.raises(ConfigError, match="unterminated"):
        parse_dotenv('A="open\n', Path(".dev.vars"))


def test_dev_vars_and_environment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_app(tmp_path, "wrangler.toml", ENVS)
    (tmp_path / ".dev.vars").write_text("API_KEY=s3cret-value\nLEVEL=from-dev-vars\n")
    (tmp_path / ".dev.vars.staging").write_text("API_KEY=staging-dev\n")
    config = load_config(tmp_path, environ={"API_KEY": "ignored without the switch"})
    assert config.vars == {"LEVEL": "from-dev-vars", "API_KEY": "s3cret-value"}
    assert config.secret_names == ("API_KEY", "LEVEL")
    assert load_config(tmp_path, "staging", environ={}).vars == {
        "LEVEL": "staging",
        "API_KEY": "staging-dev",
    }
    # Wrangler's switch takes the whole process environment (names that fit env only).
    everything = load_config(
        tmp_path,
        environ={"CLOUDFLARE_INCLUDE_PROCESS_ENV": "true", "API_KEY": "env", "a-b": "x"},
    )
    assert everything.vars["API_KEY"] == "env" and "a-b" not in everything.vars
    # Values are never logged.
    with caplog.at_level(logging.DEBUG, "stateroom.config"):
        load_config(tmp_path, environ={})
    assert "s3cret-value" not in caplog.text and "from-dev-vars" not in caplog.text


def test_required_secrets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_app(
        tmp_path,
        "wrangler.jsonc",
        '{"name": "a", "main": "worker.py", "vars": {"V": 1},'
        ' "secrets": {"required": ["API_KEY", "DB_PASSWORD"]}}',
    )
    (tmp_path / ".dev.vars").write_text("API_KEY=file\nDB_PASSWORD=file\nEXTRA=dropped\n")
    config = load_config(tmp_path, environ={"DB_PASSWORD": "env", "OTHER": "x"})
    # Only the declared names; the environment wins over the file.
    assert config.vars == {"V": 1, "API_KEY": "file", "DB_PASSWORD": "env"}
    (tmp_path / ".dev.vars").unlink()
    with caplog.at_level(logging.WARNING, "stateroom.config"):
        partial = load_config(tmp_path, environ={"API_KEY": "k"})
    assert partial.vars == {"V": 1, "API_KEY": "k"}
    assert "no value for DB_PASSWORD" in caplog.text
    with pytest.raises(
        ConfigError, match=re.escape("`secrets.required`: no value for DB_PASSWORD")
    ):
        load_config(tmp_path, environ={"API_KEY": "k"}, require_secrets=True)
    write_app(tmp_path, "wrangler.jsonc", '{"name": "a", "main": "worker.py", "secrets": ["X"]}')
    with pytest.raises(ConfigError, match="`secrets`: expected a table"):
        load_config(tmp_path, environ={})


# -- over real sockets --------------------------------------------------------------------


def copy_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    return app


def vars_of(srv: object) -> dict[str, object]:
    status, body = fetch(srv, "/vars")  # type: ignore[arg-type]
    assert status == 200, body
    data = json.loads(body)
    assert isinstance(data, dict)
    return data


def test_serve_a_cloudflare_style_project(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    (app / ".dev.vars").write_text('API_KEY="from dev vars"\n')
    with serve(app) as srv:
        assert vars_of(srv) == {
            "GREETING": "hello from the top level",
            "SITE": "https://example.test//not-a-comment/* nor this */",
            "API_KEY": "from dev vars",
            "COUNTER": True,
        }
        assert fetch(srv, "/shout") == (200, "HELLO FROM THE TOP LEVEL!")  # sibling import
        assert fetch(srv, "/count") == (200, "1")
        assert fetch(srv, "/count") == (200, "2")
        log = srv.output()
        assert "unknown key `future_key` ignored" in log
        assert "`kv_namespaces`: stateroom does not provide this kind of binding" in log
        assert "from dev vars" not in log


def test_serve_env_staging_with_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = copy_app(tmp_path)
    (app / ".dev.vars").write_text("API_KEY=top\n")
    (app / ".dev.vars.staging").write_text("API_KEY=staging file\nDB_PASSWORD=file\n")
    text = (app / "wrangler.jsonc").read_text()
    (app / "wrangler.jsonc").write_text(
        text.replace(
            '"vars": { "GREETING": "hello from staging" },',
            '"vars": { "GREETING": "hello from staging" },\n'
            '      "secrets": { "required": ["API_KEY", "DB_PASSWORD"] },',
        )
    )
    monkeypatch.setenv("DB_PASSWORD", "from the environment")
    with serve(app, "--env", "staging") as srv:
        assert vars_of(srv) == {
            "GREETING": "hello from staging",
            "API_KEY": "staging file",
            "DB_PASSWORD": "from the environment",
            "COUNTER": True,
        }
        assert fetch(srv, "/shout") == (200, "HELLO FROM STAGING!")
        assert "[env.staging]" in srv.output()
    with serve(app, "--env", "bare") as srv:
        assert vars_of(srv) == {"API_KEY": "top", "COUNTER": False}
        assert "`durable_objects` is not inherited by [env.bare]" in srv.output()
    # `serve` refuses to start without a required secret; the message says what to set.
    monkeypatch.delenv("DB_PASSWORD")
    (app / ".dev.vars.staging").write_text("API_KEY=x\n")
    result = subprocess.run(
        [sys.executable, "-m", "stateroom", "serve", str(app), "--port", "0", "--env", "staging"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "`secrets.required`: no value for DB_PASSWORD" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "stateroom", "serve", str(app), "--port", "0", "--env", "prod"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "`env.prod`: no such environment (--env prod); environments: bare, staging" in (
        result.stderr
    )


def test_dev_reloads_when_dev_vars_change(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    (app / ".dev.vars").write_text("API_KEY=first\n")
    with serve(app, command="dev") as srv:
        assert vars_of(srv)["API_KEY"] == "first"
        (app / ".dev.vars").write_text("API_KEY=second\n")
        srv.wait_for_log(r"reloaded \(")
        assert vars_of(srv)["API_KEY"] == "second"
        (app / "src" / "greeting.py").write_text(
            "def shout(text):\n    return text.lower() + '?'\n"
        )
        srv.wait_for_log(r"reloaded \((?:.|\n)*reloaded \(")
        assert fetch(srv, "/shout") == (200, "hello from the top level?")


def test_vendored_python_modules_are_importable(tmp_path: Path) -> None:
    """pywrangler vendors a project's packages into python_modules/ next to src/."""
    app = copy_app(tmp_path)
    package = app / "python_modules" / "vendored_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 'from python_modules'\n")
    entry = app / "src" / "entry.py"
    entry.write_text(
        entry.read_text().replace(
            'if path == "/shout":',
            'if path == "/vendored":\n'
            "            import vendored_pkg\n\n"
            "            return Response(vendored_pkg.VALUE)\n"
            '        if path == "/shout":',
        )
    )
    with serve(app) as srv:
        assert fetch(srv, "/vendored") == (200, "from python_modules")
