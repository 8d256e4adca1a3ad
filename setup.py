"""Build step: compile the per-message hot path with mypyc.

Everything else about the package is in pyproject.toml. The modules listed in
``stateroom.compiled.HOT_MODULES`` are compiled to C extensions; the rest stays
Python. Set ``STATEROOM_PURE_PYTHON=1`` to skip compilation; if mypyc or a C
compiler is missing, the build warns and installs pure Python (same behaviour,
lower throughput).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent


def _ext_modules() -> list[Extension]:
    if os.environ.get("STATEROOM_PURE_PYTHON"):
        return []
    hot = runpy.run_path(str(ROOT / "src" / "stateroom" / "compiled.py"))["HOT_MODULES"]
    paths = ["src/" + name.replace(".", "/") + ".py" for name in hot]
    extensions: list[Extension] = []
    try:
        from mypyc.build import mypycify

        extensions += mypycify(paths, opt_level="3", debug_level="1", group_name="stateroom")
    except (SystemExit, Exception) as exc:  # mypyc missing, or it refused the source
        print(f"warning: hot path not compiled ({exc}); it runs as pure Python", file=sys.stderr)
    # Frame unmasking, hand-written C (the file says why); frames.py falls back without it.
    extensions.append(
        Extension(
            "stateroom.protocol._unmask",
            ["src/stateroom/protocol/_unmask.c"],
            extra_compile_args=["-O3"],
        )
    )
    # The commit log's writer thread, which must never take the GIL (the file says why);
    # local_log.py falls back to a Python thread without it.
    extensions.append(
        Extension(
            "stateroom.storage._logwriter",
            ["src/stateroom/storage/_logwriter.c"],
            extra_compile_args=["-O2"],
        )
    )
    for ext in extensions:
        ext.optional = True  # no C compiler: build_ext warns and the .py files are used
    return extensions


os.chdir(ROOT)  # mypycify takes paths relative to the project
setup(ext_modules=_ext_modules())
