"""The layers import one way only, so each can be placed in a process of its own.

``protocol`` and ``storage`` import no other layer; ``runtime`` only ``storage``;
``api`` (what user code sees) sits above the runtime; the network ``server`` holds
sockets and imports the protocol core, the HTTP data model and the runtime's seam,
never the object runtime or storage. Imports inside functions count; imports under
``if TYPE_CHECKING:`` do not (they exist for the type checker only). The modules at
the top (``worker.py`` puts the layers together, ``cli.py`` runs them) may import
anything; nothing in a layer imports them. README.md, "Architecture", draws this.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "stateroom"
LAYERS = ("protocol", "storage", "runtime", "api", "server")

# Which other layers' modules each layer may import (a prefix allows a whole layer).
ALLOWED: dict[str, tuple[str, ...]] = {
    "protocol": (),
    "storage": (),
    "runtime": ("stateroom.storage",),
    "api": ("stateroom.runtime", "stateroom.storage", "stateroom.protocol.frames"),
    "server": (
        "stateroom.protocol",
        # The HTTP data model the server parses into and serialises from.
        "stateroom.api.headers",
        "stateroom.api.requests",
        "stateroom.api.responses",
        "stateroom.api.streams",
        # The event interface: the server's only way to the application.
        "stateroom.runtime.interface",
        # A request's id and the object it reached, for logs and error pages.
        "stateroom.runtime.trace",
    ),
}


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _imports(tree: ast.AST) -> set[str]:
    """Modules imported anywhere in ``tree`` except under ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            stack.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # ``from stateroom.runtime import hibernation`` imports a module too.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name == "stateroom" or name.startswith("stateroom.")}


def _module_imports() -> dict[str, set[str]]:
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = _imports(ast.parse(path.read_text(), str(path)))
    known = set(modules)
    # Keep only real modules: ``from x import name`` also listed x.name.
    return {
        name: {i for i in imported if i in known and i != name}
        for name, imported in modules.items()
    }


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_each_layer_imports_only_what_it_may() -> None:
    wrong = []
    for module, imported in _module_imports().items():
        layer = _layer(module)
        if layer is None:
            continue
        for target in sorted(imported):
            other = _layer(target)
            if other == layer:
                continue
            if other is None or not any(
                target == allowed or target.startswith(allowed + ".") for allowed in ALLOWED[layer]
            ):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_import_cycle_between_layers() -> None:
    edges: dict[str, set[str]] = {layer: set() for layer in LAYERS}
    for module, imported in _module_imports().items():
        layer = _layer(module)
        if layer is not None:
            edges[layer].update(o for t in imported if (o := _layer(t)) not in (None, layer))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or reaches(nxt, goal, seen | {nxt}) for nxt in edges[start] - seen)

    assert [layer for layer in LAYERS if reaches(layer, layer, set())] == []


def test_the_network_server_loads_neither_storage_nor_sqlite() -> None:
    code = (
        "import sys, stateroom.server.server, stateroom.server.websocket\n"
        "print(' '.join(sorted(m for m in sys.modules if 'sqlite' in m or 'storage' in m"
        " or m.startswith('stateroom.runtime.actor'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
