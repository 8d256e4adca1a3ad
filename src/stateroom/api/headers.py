"""HTTP headers as user code sees them: case-insensitive, multi-valued, ordered.

Mirrors the Fetch API's ``Headers``: ``get()`` joins repeated values with
``", "`` (except ``Set-Cookie``, which ``getSetCookie()`` returns whole).
Names are kept as first written so a response goes out with the casing the
application chose, which is what clients comparing bytes observe.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Union

HeadersInit = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]], None]


def _check(name: str, value: str) -> tuple[str, str]:
    if not name or any(c in name for c in " \t\r\n:"):
        raise TypeError(f"Invalid header name: {name!r}")
    value = value.strip(" \t")
    if "\r" in value or "\n" in value or "\0" in value or not value.isascii():
        try:
            value.encode("latin-1")  # a ByteString, as the Fetch API requires
        except UnicodeEncodeError:
            raise TypeError(
                f"Invalid header value for {name!r}: {value!r} has characters outside "
                "Latin-1; percent-encode it (urllib.parse.quote) or use RFC 8187 encoding"
            ) from None
        if "\r" in value or "\n" in value or "\0" in value:
            raise TypeError(f"Invalid header value for {name!r}: {value!r}")
    if not name.isascii():
        raise TypeError(f"Invalid header name: {name!r}")
    return name, value


class Headers:
    """Case-insensitive multimap of header names to values."""

    __slots__ = ("_items",)

    def __init__(self, init: HeadersInit = None) -> None:
        self._items: list[tuple[str, str]] = []
        if init is None:
            return
        if isinstance(init, Headers):
            self._items = list(init._items)
            return
        pairs = init.items() if isinstance(init, Mapping) else init
        for name, value in pairs:
            self.append(name, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]]) -> Headers:
        """Wrap already-validated pairs (from the HTTP parser) without copying."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def get(self, name: str) -> str | None:
        key = name.lower()
        values = [v for n, v in self._items if n.lower() == key]
        if not values:
            return None
        return ", ".join(values)

    def getSetCookie(self) -> list[str]:
        return [v for n, v in self._items if n.lower() == "set-cookie"]

    get_set_cookie = getSetCookie

    def getAll(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    get_all = getAll

    def has(self, name: str) -> bool:
        key = name.lower()
        return any(n.lower() == key for n, _ in self._items)

    def set(self, name: str, value: str) -> None:
        name, value = _check(name, str(value))
        key = name.lower()
        for i, (n, _) in enumerate(self._items):
            if n.lower() == key:
                self._items[i] = (n, value)
                self._items[i + 1 :] = [p for p in self._items[i + 1 :] if p[0].lower() != key]
                return
        self._items.append((name, value))

    def append(self, name: str, value: str) -> None:
        self._items.append(_check(name, str(value)))

    def delete(self, name: str) -> None:
        key = name.lower()
        self._items = [p for p in self._items if p[0].lower() != key]

    def items(self) -> Iterator[tuple[str, str]]:
        """Pairs in insertion order, names as written (the order sent on the wire)."""
        return iter(list(self._items))

    def entries(self) -> Iterator[tuple[str, str]]:
        """Fetch API order: lower-cased names, sorted, repeated values combined."""
        seen: dict[str, list[str]] = {}
        for n, v in self._items:
            seen.setdefault(n.lower(), []).append(v)
        for key in sorted(seen):
            if key == "set-cookie":
                for v in seen[key]:
                    yield key, v
            else:
                yield key, ", ".join(seen[key])

    def keys(self) -> Iterator[str]:
        return (k for k, _ in self.entries())

    def values(self) -> Iterator[str]:
        return (v for _, v in self.entries())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self.entries()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.delete(name)

    def __len__(self) -> int:
        return len({n.lower() for n, _ in self._items})

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"
