"""JSON with comments and trailing commas (JSONC), as ``wrangler.jsonc`` is written.

Wrangler reads ``wrangler.json`` and ``wrangler.jsonc`` alike as JSONC: JSON plus
``// line`` and ``/* block */`` comments and a trailing comma before ``}`` or ``]``.
``loads`` strips those, outside strings only (so ``"https://a.example"`` and
``"/* not a comment */"`` stay as written), and hands the rest to the standard ``json``
module, which does all the validation. Comments become spaces and newlines stay, so an
error's line and column point into the file as written.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSONCError", "loads", "strip"]


class JSONCError(ValueError):
    """The text is not JSONC; ``lineno`` and ``colno`` point at the problem (1-based)."""

    def __init__(self, message: str, lineno: int, colno: int) -> None:
        super().__init__(f"{message} (line {lineno}, column {colno})")
        self.msg = message
        self.lineno = lineno
        self.colno = colno


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def strip(text: str) -> str:
    """The JSON left after removing comments and trailing commas (same line numbers)."""
    out: list[str] = []
    # Index in ``out`` of a comma that may turn out to be trailing, while only whitespace
    # and comments have followed it.
    pending_comma: int | None = None
    last = ""  # the last character outside comments and whitespace
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            start = i
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    break  # json reports the unterminated string
                i += 1
            i += 1
            out.append(text[start:i])
            pending_comma = None
            last = '"'
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            end = text.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            if end == -1:
                raise JSONCError("unterminated /* comment", *_position(text, i))
            comment = text[i : end + 2]
            out.append("".join(ch if ch == "\n" else " " for ch in comment))
            i = end + 2
            continue
        if c in "}]" and pending_comma is not None:
            out[pending_comma] = " "
        if c == ",":
            # Only a comma after a value can be trailing: "[,]" stays an error.
            pending_comma = len(out) if last not in ("", "[", "{", ",") else None
        elif not c.isspace():
            pending_comma = None
        if not c.isspace():
            last = c
        out.append(c)
        i += 1
    return "".join(out)


def loads(text: str) -> Any:
    """Parse JSONC text; raises ``JSONCError`` with the line and column of an error."""
    text = text.removeprefix("\ufeff")
    plain = strip(text)
    try:
        return json.loads(plain)
    except json.JSONDecodeError as exc:
        raise JSONCError(exc.msg, exc.lineno, exc.colno) from None
