"""wrangler.toml parsing: what is accepted and how errors name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stateroom.config import ConfigError, load_config


def write(tmp_path: Path, text: str, main: bool = True) -> Path:
    (tmp_path / "wrangler.toml").write_text(text)
    if main:
        (tmp_path / "worker.py").write_text("")
    return tmp_path


GOOD = """
name = "app"
main = "worker.py"
compatibility_date = "2024-01-01"

[vars]
A = "b"

[[durable_objects.bindings]]
name = "ROOMS"
class_name = "Room"

[[migrations]]
tag = "v1"
new_classes = ["Old"]

[[migrations]]
tag = "v2"
renamed_classes = [{ from = "Old", to = "Room" }]
new_sqlite_classes = ["Other"]
deleted_classes = ["Other"]
"""


def test_good_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.name == "app"
    assert config.main == (tmp_path / "worker.py").resolve()
    assert config.vars == {"A": "b"}
    assert [(b.name, b.class_name) for b in config.durable_objects] == [("ROOMS", "Room")]
    assert config.class_storage() == {"Room": "kv"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('main = "worker.py"', "`name`: is required"),
        ('name = "a"', "`main`: is required"),
        ('name = "a"\nmain = "nope.py"', "`main`: 'nope.py' does not exist"),
        ('name = 3\nmain = "worker.py"', "`name`: expected a non-empty string, got 3"),
        (
            'name = "a"\nmain = "worker.py"\n[[durable_objects.bindings]]\nname = "X"\n',
            "`durable_objects.bindings[0].class_name`: is required",
        ),
        (
            'name = "a"\nmain = "worker.py"\n[[durable_objects.bindings]]\nname = "X"\n'
            'class_name = "C"\n',
            "`durable_objects.bindings[0].class_name`: class 'C' has no migration",
        ),
        (
            'name = "a"\nmain = "worker.py"\n[[migrations]]\nnew_classes = "C"\n',
            "`migrations[0].new_classes`: expected a list of class names",
        ),
        ('name = "a"\nmain = "worker.py"\nvars = 1\n', "`vars`: expected a table"),
        ("name = ", "invalid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(tmp_path / "wrangler.toml") in str(info.value)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path)
