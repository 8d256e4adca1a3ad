"""The ``env`` a Python Worker sees, and the RPC value converters of Cloudflare's SDK.

Under Cloudflare a Python Worker's ``env`` is a JavaScript object, wrapped so that
bindings take Python values (``_EnvWrapper``), and values crossing an RPC call are
converted to and from JavaScript (``python_to_rpc``/``python_from_rpc``). stateroom calls
Durable Objects in-process with Python values, so the converters hand values through, and
``_EnvWrapper`` is a thin view of stateroom's ``env`` (attributes and items).
"""

from __future__ import annotations

from typing import Any


class _EnvWrapper:
    """``env`` as Worker code sees it: ``env.NAME`` and ``env["NAME"]``.

    Wrapping is idempotent: ``_EnvWrapper(_EnvWrapper(e))`` is the same wrapper, so a class
    hierarchy several levels deep never wraps twice.
    """

    __slots__ = ("_env",)
    _env: Any

    def __new__(cls, env: Any) -> _EnvWrapper:
        if isinstance(env, _EnvWrapper):
            return env
        wrapper = super().__new__(cls)
        object.__setattr__(wrapper, "_env", env)
        return wrapper

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._env, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._env, name)

    def __getitem__(self, name: str) -> Any:
        return getattr(self._env, name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and hasattr(self._env, name)

    def __dir__(self) -> list[str]:
        return dir(self._env)

    def __repr__(self) -> str:
        return f"_EnvWrapper({self._env!r})"


def python_to_rpc(value: Any) -> Any:
    """Values cross stateroom's RPC as Python objects: returned unchanged."""
    return value


def python_from_rpc(value: Any) -> Any:
    """Values cross stateroom's RPC as Python objects: returned unchanged."""
    return value
