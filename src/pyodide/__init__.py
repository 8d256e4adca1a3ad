"""``pyodide`` for Python Workers run by stateroom: the parts Cloudflare's Workers use.

Cloudflare runs Python Workers in Pyodide (CPython compiled to WebAssembly, next to a
JavaScript engine), so Worker code imports ``pyodide.ffi`` to cross into JavaScript.
stateroom runs the same code on ordinary CPython with no JavaScript engine: the
"JavaScript" objects are stateroom's own Python objects, so ``pyodide.ffi`` is a set of
thin adapters (``to_js`` and ``create_proxy`` hand values through, ``run_sync`` runs a
coroutine to completion). See ``pyodide.ffi`` for what each one does here.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.28.2"
"""The Pyodide release whose ``pyodide.ffi`` API these adapters follow (the one in
Cloudflare's current Python Workers runtime). Code that checks for the old 0.26.0a2
runtime (as Cloudflare's own tests do) takes its newer branch. This is not Pyodide."""
