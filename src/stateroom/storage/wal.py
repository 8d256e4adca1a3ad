"""SQLite WAL frames: taking a commit's pages out of the WAL, and putting them back.

An object's database runs in WAL mode with an exclusive lock (no ``-shm`` file; the
WAL index lives in the connection's heap) and no automatic checkpoints. A commit
appends frames to ``<db>-wal``: a 24-byte header (page number, database size in
pages for the frame that commits, the WAL's two salts, a checksum) and a full
page. Right after ``COMMIT`` returns, ``WalTail.capture()`` reads the bytes from
where the previous commit ended to the last commit frame: that range, unchanged,
is the commit's log record. Frames past the last commit frame are left over from
a rolled-back transaction that spilled pages; the next commit overwrites them, so
they are never captured.

Restoring is the reverse: ``apply()`` writes each frame's page at its place in a
database image and cuts the image to the size the commit frame gives. Applied in
log order, full page images make replay idempotent, whatever the file held.

Format: https://www.sqlite.org/fileformat2.html#walformat
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Final

__all__ = [
    "FRAME_HEADER",
    "WAL_HEADER",
    "WalError",
    "WalTail",
    "apply",
    "apply_to_file",
    "image_frames",
    "iter_frames",
]

WAL_HEADER: Final = 32
FRAME_HEADER: Final = 24
_MAGICS: Final = (0x377F0682, 0x377F0683)
_HEADER: Final = struct.Struct(">IIIIII")  # magic, version, page size, checkpoint seq, salts
_FRAME: Final = struct.Struct(">IIII")  # page number, size after commit, salts
_READ_FRAMES: Final = 4  # frames in the first read of a capture


class WalError(Exception):
    """The WAL or a record does not have the shape this module expects."""


class WalTail:
    """Where the last captured commit ended in one database's WAL file.

    ``reset()`` after a checkpoint that truncated the WAL (the next commit writes a
    new header, with new salts, from offset 0).
    """

    __slots__ = ("_retired", "_salts", "offset", "page_size")

    def __init__(self) -> None:
        self.offset = 0
        self.page_size = 0
        self._salts = b""
        self._retired = b""

    def reset(self) -> None:
        """The WAL was checkpointed: its next commit starts a new generation at 0."""
        self.offset = 0
        # Until that commit, the header (and frames) of the old generation remain
        # (RESTART reuses the file): they must not be captured twice.
        self._retired = self._salts
        self._salts = b""

    def capture(self, fd: int) -> bytes:
        """The frames of every commit since the last capture (``b""`` if none).

        ``fd`` is the WAL file, open for reading.
        """
        offset = self.offset
        if offset == 0:
            header = os.pread(fd, WAL_HEADER, 0)
            if len(header) < WAL_HEADER:
                return b""
            magic, _version, page_size, _seq, _salt1, _salt2 = _HEADER.unpack_from(header)
            if magic not in _MAGICS:
                raise WalError(f"not a WAL file (magic {magic:#x})")
            if header[16:24] == self._retired:
                return b""  # still the checkpointed generation: nothing new
            self.page_size = page_size
            self._salts = header[16:24]
            offset = WAL_HEADER
        frame_size = FRAME_HEADER + self.page_size
        salts = self._salts
        unpack = _FRAME.unpack_from
        # Read a few frames at a time until one is not of this WAL generation (the
        # WAL's blocks are reused after a checkpoint: older frames follow the live
        # ones) or the file ends. Most commits are a frame or two: one read.
        chunks: list[bytes] = []
        end = 0  # bytes (from offset) up to the end of the last commit frame
        scanned = 0
        want = _READ_FRAMES
        while True:
            data = os.pread(fd, want * frame_size, offset + scanned)
            position = 0
            live = True
            while position + frame_size <= len(data):
                if data[position + 8 : position + 16] != salts:
                    live = False
                    break
                if unpack(data, position)[1]:
                    end = scanned + position + frame_size
                position += frame_size
            chunks.append(data)
            scanned += position
            if not live or len(data) < want * frame_size:
                break
            want *= 4
        if end == 0:
            return b""
        self.offset = offset + end
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return data[:end] if end < len(data) else data


def iter_frames(frames: bytes, page_size: int) -> Iterator[tuple[int, int, memoryview]]:
    """``(page number, database pages after commit or 0, page)`` for each frame."""
    frame_size = FRAME_HEADER + page_size
    if page_size <= 0 or len(frames) % frame_size:
        raise WalError(f"{len(frames)} bytes are not whole frames of {page_size}-byte pages")
    view = memoryview(frames)
    for position in range(0, len(frames), frame_size):
        pgno, commit_size, _s1, _s2 = _FRAME.unpack_from(frames, position)
        if pgno == 0:
            raise WalError("a frame has page number 0")
        yield pgno, commit_size, view[position + FRAME_HEADER : position + frame_size]


def apply(image: bytearray, frames: bytes, page_size: int) -> None:
    """Replay a record's frames onto a database image, in place."""
    for pgno, commit_size, page in iter_frames(frames, page_size):
        start = (pgno - 1) * page_size
        if len(image) < start:
            image.extend(bytes(start - len(image)))
        image[start : start + page_size] = page
        if commit_size:
            del image[commit_size * page_size :]


def apply_to_file(fd: int, frames: bytes, page_size: int) -> None:
    """Replay a record's frames onto a database file (for recovery), in place."""
    for pgno, commit_size, page in iter_frames(frames, page_size):
        os.pwrite(fd, page, (pgno - 1) * page_size)
        if commit_size:
            os.ftruncate(fd, commit_size * page_size)


def image_frames(image: bytes, page_size: int) -> bytes:
    """A whole database image as WAL frames (the last one the commit): replayed onto any
    state of the database, they give exactly the image."""
    count = len(image) // page_size
    parts = []
    for index in range(count):
        commit = count if index == count - 1 else 0
        parts.append(_FRAME.pack(index + 1, commit, 0, 0) + bytes(8))
        parts.append(image[index * page_size : (index + 1) * page_size])
    return b"".join(parts)
