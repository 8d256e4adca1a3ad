"""WebSocket hibernation: attachments that outlive the object's instance.

A hibernatable socket keeps a small serialized value (its attachment) on the
socket itself, so the object can be evicted and rebuilt around it.
"""

from __future__ import annotations

from typing import Any

from stateroom.storage.encoding import decode, encode

# Cloudflare's limit on a serialized attachment.
MAX_ATTACHMENT_SIZE = 16 * 1024


def serialize_attachment(value: Any) -> bytes | None:
    if value is None:
        return None
    data = encode(value)
    if len(data) > MAX_ATTACHMENT_SIZE:
        raise ValueError(
            f"serializeAttachment(): the serialized value is {len(data)} bytes; "
            f"the limit is {MAX_ATTACHMENT_SIZE} bytes. Store large state in ctx.storage "
            "and keep only a key in the attachment."
        )
    return data


def deserialize_attachment(data: bytes | None) -> Any:
    return None if data is None else decode(data)
