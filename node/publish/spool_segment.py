"""The spool's on-disk format: framed records in numbered append-only segment files.

Kept apart from the spool's policy (`disk_spool.py`: when to write, sync, drop and deliver) and from
recovery (`spool_recovery.py`: what a restart does with what it finds) so the byte layout is in one
place and can be read without the rules around it. A segment file `seg-<n>.log` is a run of
frames: magic (`A5 C5`), body length, CRC32 of the body, then the body. A message body (version 1)
holds flags, the topic name, `t`, `seq` and the JSON payload. A segment begins with a checkpoint
body (version 2): the last `seq` written per topic before the segment and the kernel's boot id, so
that the newest segment alone tells a node restarted in the same boot where every topic's `seq`
continues. The magic and CRC let a reader find the next whole frame after damaged bytes (so damage
costs the record it hits, not the rest of the segment) and tell a torn last record (what `kill -9`
during a write or a power cut leaves) from real damage. The format is the one nodes have always
written: old segments read the same way. `cursor.json` holds the delivery position, overwritten in
place. Every file is created 0600 whatever the umask (`create_private`): messages are the node's
observations, nobody else's business.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

EXPIRES = 0x01  # flag: a track update that may be dropped once older than the stale age
QUARANTINE = "quarantine"  # subdirectory of the spool where damaged files are moved aside

_FRAME = struct.Struct("<HII")  # magic, body length, crc32(body)
_MAGIC = 0xC5A5
MAGIC_BYTES = struct.pack("<H", _MAGIC)  # what a reader looks for to resynchronise after damage
FILE_MODE = 0o600  # segments, cursor, kept parts of damaged files
_BODY = struct.Struct("<BBHdQ")  # version, flags, len(name), t, seq
_VERSION = 1
_CHECKPOINT = 2  # body version of a checkpoint (older nodes quarantine it rather than send it)
_MAX_BODY = 16 * 1024 * 1024
_SEGMENT_PREFIX = "seg-"
_SEGMENT_SUFFIX = ".log"
_CURSOR_BYTES = 64  # the cursor file's fixed size: one sector, so a write of it is never torn
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot of the kernel ("" where Linux does not say): records written in the same boot
    survive `kill -9` in the page cache even when not synced; after a reboot only synced ones do."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


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
        return _frame(_BODY.pack(_VERSION, self.flags, len(name), self.t, self.seq) + name + self.payload)

    @classmethod
    def decode_body(cls, body: bytes) -> Record:
        record = decode_body(body)
        if not isinstance(record, Record):
            raise ValueError("a checkpoint, not a message")
        return record


def _frame(body: bytes) -> bytes:
    return _FRAME.pack(_MAGIC, len(body), zlib.crc32(body)) + body


@dataclass(frozen=True)
class Checkpoint:
    """What opens a segment: the last `seq` written per topic before it, and the boot it was
    written in."""

    seqs: dict[str, int]
    boot: str

    def encode(self) -> bytes:
        data = json.dumps({"boot": self.boot, "seqs": self.seqs}, sort_keys=True, separators=(",", ":"))
        return _frame(_BODY.pack(_CHECKPOINT, 0, 0, time.time(), 0) + data.encode())


def create_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """Open (creating) `path` with mode 0600, also when it existed or the umask is looser: an
    `os.open` mode only applies to a new file and is masked, so the mode is set on the fd too."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def parse_frame(data: bytes | memoryview, offset: int) -> tuple[int, Record | Checkpoint] | str:
    """The whole, valid frame at `offset` of `data`: (its end, what it holds); or why there is none
    there: "torn" (it runs past the end of `data`, or only its CRC fails and it ends exactly at
    the end: a write cut short), "bad frame header", "CRC mismatch" or "undecodable record"."""
    if len(data) - offset < _FRAME.size:
        return "torn"
    magic, length, crc = _FRAME.unpack_from(data, offset)
    if magic != _MAGIC or length > _MAX_BODY or length < _BODY.size:
        return "bad frame header"
    end = offset + _FRAME.size + length
    if end > len(data):
        return "torn"
    body = bytes(data[offset + _FRAME.size : end])
    if zlib.crc32(body) != crc:
        return "torn" if end == len(data) else "CRC mismatch"
    try:
        return end, decode_body(body)
    except (ValueError, UnicodeDecodeError, struct.error):
        return "undecodable record"


def decode_body(body: bytes) -> Record | Checkpoint:
    """A message record or a checkpoint."""
    version, flags, name_len, t, seq = _BODY.unpack_from(body)
    start = _BODY.size
    if version == _CHECKPOINT:
        data = json.loads(body[start:])
        seqs = data.get("seqs") if isinstance(data, dict) else None
        if not isinstance(seqs, dict) or not all(isinstance(v, int) for v in seqs.values()):
            raise ValueError("bad checkpoint")
        return Checkpoint({str(k): int(v) for k, v in seqs.items()}, str(data.get("boot", "")))
    if version != _VERSION:
        raise ValueError(f"unknown record version {version}")
    name = body[start : start + name_len].decode()
    return Record(name, seq, t, flags, bytes(body[start + name_len :]))


@dataclass
class Segment:
    """One segment as the spool knows it: its number, path, size, where its messages start (after
    the checkpoint) and end; `memory` holds its bytes when the card could not be written."""

    index: int
    path: Path
    size: int
    ends: array[int]  # end offset of every message record, in order (checkpoints excluded)
    start: int = 0  # where the first message record begins
    memory: bytearray | None = None

    def records_after(self, offset: int) -> int:
        """How many message records end after `offset` (i.e. are not yet committed)."""
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


def read_frame(segment: Segment, fd: int | None, offset: int) -> tuple[Record | None, int]:
    """The frame starting at `offset` of a scanned segment, read from `fd` or from its memory: the
    record (None for a checkpoint) and the offset where it ends. Checked again (the card may have
    changed under a scanned file): raises ValueError when it is not a whole valid frame, OSError
    when the card cannot be read."""
    if segment.memory is not None:
        header = bytes(segment.memory[offset : offset + _FRAME.size])
    else:
        assert fd is not None
        header = os.pread(fd, _FRAME.size, offset)
    if len(header) < _FRAME.size:
        raise ValueError(f"no whole frame at byte {offset}")
    magic, length, crc = _FRAME.unpack(header)
    begin = offset + _FRAME.size
    if segment.memory is not None:
        body = bytes(segment.memory[begin : begin + length])
    else:
        assert fd is not None
        body = os.pread(fd, length, begin) if magic == _MAGIC and length <= _MAX_BODY else b""
    if magic != _MAGIC or len(body) != length or zlib.crc32(body) != crc:
        raise ValueError(f"damaged frame at byte {offset}")
    try:
        decoded = decode_body(body)
    except (UnicodeDecodeError, struct.error) as exc:
        raise ValueError(f"undecodable frame at byte {offset}: {exc}") from None
    return (decoded if isinstance(decoded, Record) else None), begin + length


class CursorFile:
    """The saved delivery position `(segment, offset)`: a JSON object padded to one sector and
    overwritten in place, so that a save is one `pwrite` (no new file and rename per save)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def load(self) -> tuple[int, int]:
        """The saved position, (0, 0) when there is none; raises ValueError/OSError when damaged."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return (0, 0)
        try:
            return int(data["segment"]), int(data["offset"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a cursor: {exc}") from None

    def save(self, position: tuple[int, int], sync: bool) -> None:
        text = json.dumps({"segment": position[0], "offset": position[1]}).encode()
        if self._fd is None:
            self._fd = create_private(self.path, os.O_RDWR | os.O_CREAT)
            os.ftruncate(self._fd, _CURSOR_BYTES)
        os.pwrite(self._fd, text.ljust(_CURSOR_BYTES), 0)
        if sync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
