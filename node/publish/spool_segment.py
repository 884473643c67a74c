"""The spool's on-disk format: framed records in numbered append-only segment files.

Kept apart from the spool's policy (`disk_spool.py`: when to write, sync, drop and deliver) so the
byte layout is in one place and can be read without the rules around it. A segment file
`seg-<n>.log` is a run of frames: magic, body length, CRC32 of the body, then the body (version,
flags, the topic name, `t`, `seq` and the JSON payload). The CRC tells a torn last record (what a
power cut leaves) from real damage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

from cuas_node.publish.seqstore import fsync_dir

# The spool's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.spool")

EXPIRES = 0x01  # flag: a track update that may be dropped once older than the stale age
QUARANTINE = "quarantine"  # subdirectory of the spool where damaged files are moved aside

_FRAME = struct.Struct("<HII")  # magic, body length, crc32(body)
_MAGIC = 0xC5A5
_BODY = struct.Struct("<BBHdQ")  # version, flags, len(name), t, seq
_VERSION = 1
_MAX_BODY = 16 * 1024 * 1024
_SEGMENT_PREFIX = "seg-"
_SEGMENT_SUFFIX = ".log"


@dataclass(frozen=True)
class Record:
    """One message waiting for the broker: topic name (`tracks`, ...), its `seq` and `t`, flags and
    the encoded JSON payload."""

    name: str
    seq: int
    t: float
    flags: int
    payload: bytes

    @property
    def expires(self) -> bool:
        return bool(self.flags & EXPIRES)

    def encode(self) -> bytes:
        name = self.name.encode()
        body = _BODY.pack(_VERSION, self.flags, len(name), self.t, self.seq) + name + self.payload
        return _FRAME.pack(_MAGIC, len(body), zlib.crc32(body)) + body

    @classmethod
    def decode_body(cls, body: bytes) -> Record:
        version, flags, name_len, t, seq = _BODY.unpack_from(body)
        if version != _VERSION:
            raise ValueError(f"unknown record version {version}")
        start = _BODY.size
        name = body[start : start + name_len].decode()
        return cls(name, seq, t, flags, bytes(body[start + name_len :]))


@dataclass
class Segment:
    """One segment file as the spool knows it: its number, path, size and record boundaries."""

    index: int
    path: Path
    size: int
    ends: array[int]  # end offset of every record, in order

    def records_after(self, offset: int) -> int:
        """How many records end after `offset` (i.e. are not yet committed)."""
        lo, hi = 0, len(self.ends)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.ends[mid] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return len(self.ends) - lo


def segment_path(directory: Path, index: int) -> Path:
    """`seg-` and the index zero-padded to 20 digits, so names sort like numbers."""
    return directory / f"{_SEGMENT_PREFIX}{index:020d}{_SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files in `directory` as (index, path), oldest first; other files are ignored."""
    paths = []
    for path in directory.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}"):
        try:
            paths.append((int(path.name[len(_SEGMENT_PREFIX) : -len(_SEGMENT_SUFFIX)]), path))
        except ValueError:
            continue
    paths.sort()
    return paths


def scan_frames(data: bytes) -> tuple[array[int], int, str]:
    """Walk a segment's frames: (end offset of every valid record, where the valid part ends, the
    problem that stopped the walk: "" when none, "torn" for an incomplete last record)."""
    ends: array[int] = array("Q")
    offset = 0
    problem = ""
    while offset < len(data):
        if len(data) - offset < _FRAME.size:
            problem = "torn"
            break
        magic, length, crc = _FRAME.unpack_from(data, offset)
        if magic != _MAGIC or length > _MAX_BODY or length < _BODY.size:
            problem = "bad frame header"
            break
        end = offset + _FRAME.size + length
        if end > len(data):
            problem = "torn"
            break
        body = data[offset + _FRAME.size : end]
        if zlib.crc32(body) != crc:
            problem = "torn" if end == len(data) else "CRC mismatch"
            break
        try:
            Record.decode_body(body)
        except (ValueError, UnicodeDecodeError, struct.error):
            problem = "undecodable record"
            break
        ends.append(end)
        offset = end
    return ends, offset, problem


def read_record(fd: int, offset: int) -> tuple[Record, int]:
    """The record whose frame starts at `offset` of an open segment (already scanned, so valid),
    and the offset where it ends."""
    header = os.pread(fd, _FRAME.size, offset)
    _, length, _ = _FRAME.unpack(header)
    body = os.pread(fd, length, offset + _FRAME.size)
    return Record.decode_body(body), offset + _FRAME.size + length


def quarantine(directory: Path, path: Path, keep: bytes | None) -> None:
    """Move a damaged file to `<directory>/quarantine/` for a post-mortem, and put `keep` (its
    valid records) back in its place; when even that fails, delete it: it must not stop the node."""
    target_dir = directory / QUARANTINE
    try:
        target_dir.mkdir(exist_ok=True)
        os.replace(path, target_dir / f"{path.name}.{int(time.time())}")
        if keep:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(keep)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        fsync_dir(directory)
    except OSError as exc:
        log.error("spool: cannot quarantine %s (%s); deleting it", path, exc.strerror or exc)
        path.unlink(missing_ok=True)


def remove_temporaries(directory: Path) -> None:
    """Delete `*.tmp` files a crash left behind mid-replace."""
    for stale in directory.glob("*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
