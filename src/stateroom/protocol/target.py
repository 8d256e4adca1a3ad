"""From a request's target and ``Host`` to the URL user code sees (RFC 9112 3.2, RFC 3986).

``request.url`` is what apps route on, so it is built only from parts that cannot
change its meaning: a ``Host`` that is a valid RFC 3986 host and port (``Host: h/admin?``
or ``Host: h#`` would move the path), and a target in origin form (``/path?query``) or
absolute form (``http://host/path``, whose authority then replaces ``Host``). Anything
else is refused with 400 by the caller.

Path policy: the path reaches the app exactly as the client sent it, dot segments
(``/a/../b``, ``/%2e%2e/``) and percent-encoding included, which is what workerd gives
a Worker. Normalising here would let ``/public/../admin`` pass a proxy rule that matches
raw paths and arrive as ``/admin``; normalising only some spellings (as stateroom once
did) is worse. Apps that resolve dot segments themselves must do so before authorising.
"""

from __future__ import annotations

import re
from typing import Final

# RFC 3986 3.2.2: IP-literal (IPv6 or IPvFuture in brackets) or reg-name (which covers
# IPv4), then an optional port. reg-name = *( unreserved / pct-encoded / sub-delims ).
_HOST: Final = re.compile(
    r"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[\w.~!$&'()*+,;=:-]+)\]"
    r"|(?:[\w.~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)"
    r"(?::[0-9]*)?",
    re.ASCII,
)
# The common case, a reg-name without percent-encoding: one character class, checked fast.
_PLAIN_HOST: Final = re.compile(r"[\w.~!$&'()*+,;=-]+(?::[0-9]*)?", re.ASCII)
# The absolute form a server must accept (RFC 9112 3.2.2): scheme, authority, path-abempty
# and query; no userinfo (RFC 9110 4.2.4 forbids it in http(s) URIs).
_ABSOLUTE: Final = re.compile(r"(https?)://([^/?#@]*)(/[^#]*|\?[^#]*|)", re.ASCII | re.IGNORECASE)


class TargetError(ValueError):
    """The request target or ``Host`` cannot make a URL; answer 400."""

    def __init__(self, message: str, *, host: bool = False) -> None:
        super().__init__(message)
        self.host = host  # the Host field is at fault, not the target


def valid_host(host: str) -> bool:
    """Is ``host`` a non-empty RFC 3986 ``host [ ":" port ]``?"""
    if _PLAIN_HOST.fullmatch(host) is not None:
        return True
    return bool(host) and _HOST.fullmatch(host) is not None and not host.startswith(":")


def request_url(scheme: str, hosts: list[str], target: str) -> str:
    """``request.url`` for a request with these ``Host`` field values and target.

    Raises ``TargetError`` for a missing, repeated or invalid ``Host`` (RFC 9112 3.2:
    a server MUST answer 400) and for targets other than origin and absolute form
    (``*``, CONNECT's authority form, anything malformed). The fragment, which clients
    do not send but some do anyway, is dropped.
    """
    if len(hosts) != 1:
        raise TargetError("missing Host" if not hosts else "more than one Host", host=True)
    host = hosts[0]
    if not valid_host(host):
        raise TargetError("invalid Host", host=True)
    if target.startswith("/"):
        path = target
    else:
        match = _ABSOLUTE.fullmatch(target.partition("#")[0])
        if match is None:
            raise TargetError("invalid request target")
        host = match.group(2)
        if not valid_host(host):
            raise TargetError("invalid authority in request target")
        path = match.group(3)
        if not path.startswith("/"):
            path = "/" + path
    return f"{scheme}://{host.lower()}{path.partition('#')[0]}"
