"""The spool's on-disk format: framed records in numbered append-only segment files.

Kept apart from the spool's policy (`disk_spool.py`: when to write, sync, drop and deliver) so the
byte layout is in one place and can be read without the rules around it. A segment file
`seg-<n>.log` is a run of frames: magic, body length, CRC32 of the body, then the body. A message
body (version 1) holds flags, the topic name, `t`, `seq` and the JSON payload. A segment begins
with a checkpoint body (version 2): the last `seq` written per topic before the segment and the
kernel's boot id, so that the newest segment alone tells a node restarted in the same boot where
every topic's `seq` continues. The CRC tells
a torn last record (what `kill -9` during a write or a power cut leaves) from real damage.
`cursor.json` holds the delivery position, overwritten in place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import time
import zlib
from array import array
from dataclasses import dataclass, field
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


@dataclass
class Scan:
    """What walking a segment's frames found."""

    ends: array[int] = field(default_factory=lambda: array("Q"))
    start: int = 0  # end of a leading checkpoint (0 without one)
    checkpoint: Checkpoint | None = None
    last_seqs: dict[str, int] = field(default_factory=dict)  # the highest seq per topic seen
    valid: int = 0  # where the valid part ends
    problem: str = ""  # "" when none, "torn" for an incomplete last record


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


def scan_frames(data: bytes) -> Scan:
    """Walk a segment's frames up to the first problem."""
    scan = Scan()
    offset = 0
    while offset < len(data):
        if len(data) - offset < _FRAME.size:
            scan.problem = "torn"
            break
        magic, length, crc = _FRAME.unpack_from(data, offset)
        if magic != _MAGIC or length > _MAX_BODY or length < _BODY.size:
            scan.problem = "bad frame header"
            break
        end = offset + _FRAME.size + length
        if end > len(data):
            scan.problem = "torn"
            break
        body = data[offset + _FRAME.size : end]
        if zlib.crc32(body) != crc:
            scan.problem = "torn" if end == len(data) else "CRC mismatch"
            break
        try:
            decoded = decode_body(body)
        except (ValueError, UnicodeDecodeError, struct.error):
            scan.problem = "undecodable record"
            break
        if isinstance(decoded, Record):
            scan.ends.append(end)
            scan.last_seqs[decoded.name] = max(decoded.seq, scan.last_seqs.get(decoded.name, 0))
        elif offset == 0:
            scan.checkpoint, scan.start = decoded, end
        offset = end
    scan.valid = offset
    return scan


def read_frame(segment: Segment, fd: int | None, offset: int) -> tuple[Record | None, int]:
    """The frame starting at `offset` of a scanned (so valid) segment, read from `fd` or from its
    memory: the record (None for a checkpoint) and the offset where it ends."""
    if segment.memory is not None:
        header = bytes(segment.memory[offset : offset + _FRAME.size])
    else:
        assert fd is not None
        header = os.pread(fd, _FRAME.size, offset)
    _, length, _ = _FRAME.unpack(header)
    begin = offset + _FRAME.size
    if segment.memory is not None:
        body = bytes(segment.memory[begin : begin + length])
    else:
        assert fd is not None
        body = os.pread(fd, length, begin)
    decoded = decode_body(body)
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
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
            os.ftruncate(self._fd, _CURSOR_BYTES)
        os.pwrite(self._fd, text.ljust(_CURSOR_BYTES), 0)
        if sync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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


@dataclass
class Recovered:
    """A spool directory as the previous process left it (`recover`)."""

    segments: list[Segment] = field(default_factory=list)
    commit: tuple[int, int] = (0, 0)  # acknowledged up to here (the saved cursor, checked)
    last_seqs: dict[str, int] = field(default_factory=dict)  # the last seq written per topic
    trusted: bool = True  # last_seqs is complete: the newest segment is whole, of this boot
    next_index: int = 1  # above every segment and cursor seen, so that no number is reused
    torn: int = 0
    quarantined: int = 0


def recover(directory: Path, cursor: CursorFile) -> Recovered:
    """Open a spool after a restart: delete temporaries and segments the cursor says were
    delivered, scan the rest, cut a torn tail (counted), quarantine damage, check the cursor."""
    remove_temporaries(directory)
    found = Recovered()
    paths = list_segments(directory)
    try:
        saved = cursor.load()
    except (OSError, ValueError) as exc:
        log.error("spool: %s is damaged (%s); delivering the whole spool again", cursor.path.name, exc)
        found.quarantined += 1
        quarantine(directory, cursor.path, None)
        saved = (0, 0)
    found.next_index = max([1, saved[0] + 1] + [index + 1 for index, _ in paths])
    for i, (index, path) in enumerate(paths):
        last = i == len(paths) - 1
        if index < saved[0] and not last:
            path.unlink(missing_ok=True)  # fully delivered before the crash; not yet deleted
            continue
        segment, complete = _scan(found, directory, index, path, last)
        if segment is not None:
            found.segments.append(segment)
        if segment is not None or not complete:  # an empty file: killed right after creating it
            found.trusted = complete
    if found.segments:
        first = found.segments[0]
        if saved[0] > first.index:
            offset = first.size  # the cursor is past all of it (kept for its seq knowledge)
        else:
            offset = saved[1] if saved[0] == first.index else 0
            if offset not in (0, first.start) and offset not in set(first.ends):
                offset = 0  # not a record boundary: deliver the whole segment again (at least once)
        found.commit = (first.index, max(offset, first.start))
    return found


def _scan(
    found: Recovered, directory: Path, index: int, path: Path, last: bool
) -> tuple[Segment | None, bool]:
    """Read one segment's frames and keep what is valid; also whether its seq knowledge is
    complete (below)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.error("spool: cannot read %s (%s); moved aside", path, exc.strerror or exc)
        found.quarantined += 1
        quarantine(directory, path, None)
        return None, False
    scan = scan_frames(data)
    if scan.problem == "torn" and last:
        # What kill -9 in the middle of a write or a power cut leaves: never sent. Cut it off.
        found.torn += 1
        log.warning("spool: %s ends in a partly written record; cut at byte %d", path.name, scan.valid)
        with open(path, "r+b") as handle:
            handle.truncate(scan.valid)
            os.fsync(handle.fileno())
    elif scan.problem:
        log.error(
            "spool: %s is damaged at byte %d (%s); moved to %s/, %d message(s) before the damage kept",
            path.name,
            scan.valid,
            scan.problem,
            QUARANTINE,
            len(scan.ends),
        )
        found.quarantined += 1
        quarantine(directory, path, data[: scan.valid])
    elif last and scan.valid:
        with open(path, "rb") as handle:  # written by a killed process: make it durable now
            os.fsync(handle.fileno())
    for name, seq in {**(scan.checkpoint.seqs if scan.checkpoint else {}), **scan.last_seqs}.items():
        found.last_seqs[name] = max(seq, found.last_seqs.get(name, 0))
    if not scan.valid:
        path.unlink(missing_ok=True)
        return None, True
    # Complete: it opens with a checkpoint, lost no record but a torn last one, and was written in
    # this boot (after a power cut, records appended but not yet synced, never sent, may be gone:
    # resuming after the last one left would reuse their numbers without a trace).
    complete = (
        scan.checkpoint is not None
        and scan.checkpoint.boot == boot_id()
        and (not scan.problem or (scan.problem == "torn" and last))
    )
    return Segment(index, path, scan.valid, scan.ends, scan.start), complete


def remove_temporaries(directory: Path) -> None:
    """Delete `*.tmp` files a crash left behind mid-replace."""
    for stale in directory.glob("*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
