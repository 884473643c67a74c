"""What a restarted spool does with the segments the previous process left: keep every intact record.

Why it resynchronises instead of stopping at the first bad frame: a segment holds up to 4 MiB of
messages, and a few damaged bytes in the middle of it (a flaky SD card, a bad sector) used to cost
every record after them too. Each frame starts with a magic and carries its length and a CRC32, so
after a frame that fails, the scan looks for the next magic that starts a whole frame with a good
CRC (a false match needs a 2-byte magic, a plausible length and a 32-bit CRC to agree by chance)
and goes on from there: damage costs the records it hits. Those are counted (`skipped_records`,
an estimate from the gaps in `seq`, at least one per damaged stretch; `skipped_bytes` exactly).

A damaged file is moved to `quarantine/` for a post-mortem and a copy made of its intact frames
takes its place, so the spool reads it like any other segment. A partly written last record (what
`kill -9` in the middle of a write or a power cut leaves; never sent) is cut off and counted as
`torn`, as is a run of zero bytes at the end of the newest segment (what some filesystems leave
after a power cut). None of this ever stops the node: on a card that cannot be written the intact
frames are kept in memory instead, and every failure is logged, not raised.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from cuas_node.publish import spool_segment as fmt
from cuas_node.publish.seqstore import fsync_dir
from cuas_node.publish.spool_segment import QUARANTINE, Checkpoint, CursorFile, Record, Segment

# The spool's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.spool")


@dataclass
class Scan:
    """What walking a segment's frames found."""

    frames: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of every valid frame
    ends: array[int] = field(default_factory=lambda: array("Q"))  # end of every message record
    start: int = 0  # end of a leading checkpoint (0 without one)
    checkpoint: Checkpoint | None = None
    seqs: dict[str, list[int]] = field(default_factory=dict)  # every message's seq per topic, in order
    damaged: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, why) skipped

    @property
    def last_seqs(self) -> dict[str, int]:
        """The highest `seq` per topic seen."""
        return {name: max(seqs) for name, seqs in self.seqs.items()}

    @property
    def valid(self) -> int:
        """Where the last valid frame ends."""
        return self.frames[-1][1] if self.frames else 0

    def lost_records(self) -> int:
        """Messages the damaged stretches held, estimated from the gaps in `seq` (a segment holds
        one process's messages, numbered without gaps) and at least one per stretch."""
        gaps = 0
        for name, seqs in self.seqs.items():
            base = self.checkpoint.seqs.get(name) if self.checkpoint else None
            known = ([base] if base is not None else []) + sorted(seqs)
            gaps += sum(max(0, b - a - 1) for a, b in itertools.pairwise(known))
        return max(gaps, len(self.damaged))


def scan_frames(data: bytes) -> Scan:
    """Walk a segment's frames; after a bad one, carry on at the next whole valid frame."""
    scan = Scan()
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        parsed = fmt.parse_frame(view, offset)
        if isinstance(parsed, str):
            resume = _next_frame(view, data, offset + 1)
            scan.damaged.append((offset, resume, parsed))
            offset = resume
            continue
        end, decoded = parsed
        scan.frames.append((offset, end))
        if isinstance(decoded, Record):
            scan.ends.append(end)
            scan.seqs.setdefault(decoded.name, []).append(decoded.seq)
        elif offset == 0:
            scan.checkpoint, scan.start = decoded, end
        offset = end
    return scan


def _next_frame(view: memoryview, data: bytes, offset: int) -> int:
    """Where the next whole valid frame at or after `offset` starts; the end of `data` if none."""
    while (found := data.find(fmt.MAGIC_BYTES, offset)) >= 0:
        if not isinstance(fmt.parse_frame(view, found), str):
            return found
        offset = found + 1
    return len(data)


def quarantine(directory: Path, path: Path, keep: bytes | None) -> bool:
    """Move a damaged file to `<directory>/quarantine/` for a post-mortem and put `keep` (its intact
    frames) in its place. False when that failed: the file is then deleted if it can be, and the
    caller keeps `keep` in memory. Never raises: a damaged spool must not stop the node."""
    target_dir = directory / QUARANTINE
    try:
        target_dir.mkdir(exist_ok=True)
        os.replace(path, target_dir / f"{path.name}.{int(time.time())}")
        if keep:
            tmp = path.with_name(path.name + ".tmp")
            fd = fmt.create_private(tmp)
            try:
                os.write(fd, keep)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        fsync_dir(directory)
        return True
    except OSError as exc:
        log.error("spool: cannot quarantine %s (%s); deleting it", path, exc.strerror or exc)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return False


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
    skipped_records: int = 0  # messages lost to damage (an estimate: see Scan.lost_records)
    skipped_bytes: int = 0  # damaged bytes skipped


def recover(directory: Path, cursor: CursorFile) -> Recovered:
    """Open a spool after a restart: delete temporaries and segments the cursor says were
    delivered, scan the rest, cut a torn tail (counted), keep the intact records of damaged files,
    check the cursor. Nothing here raises on a card that cannot be written."""
    remove_temporaries(directory)
    found = Recovered()
    paths = fmt.list_segments(directory)
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
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)  # fully delivered before the crash; not yet deleted
            continue
        segment, complete, moved = _scan(found, directory, index, path, last)
        if index == saved[0] and moved is not None:
            saved = (index, moved.get(saved[1], 0))  # the same record in the rewritten file
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
) -> tuple[Segment | None, bool, dict[int, int] | None]:
    """Read one segment and keep what is intact: the segment, whether its seq knowledge is complete
    (below), and, when damage made it rewrite the file, where each frame's end moved."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.error("spool: cannot read %s (%s); moved aside", path, exc.strerror or exc)
        found.quarantined += 1
        quarantine(directory, path, None)
        return None, False, None
    scan = scan_frames(data)
    torn = False
    if last and scan.damaged and scan.damaged[-1][1] == len(data):
        begin, _, why = scan.damaged[-1]
        torn = why == "torn" or not data[begin:].strip(b"\0")
        if torn:  # kill -9 in the middle of a write, or a power cut: never sent; cut it off
            scan.damaged.pop()
            found.torn += 1
            log.warning("spool: %s ends in a partly written record; cut at byte %d", path.name, begin)
    for name, seq in {**(scan.checkpoint.seqs if scan.checkpoint else {}), **scan.last_seqs}.items():
        found.last_seqs[name] = max(seq, found.last_seqs.get(name, 0))
    moved: dict[int, int] | None = None
    memory: bytearray | None = None
    if scan.damaged:
        memory, moved = _keep_intact(found, directory, path, data, scan)
    elif torn:
        _truncate(path, scan.valid)
    elif last and scan.valid:
        _fsync(path)  # written by a killed process: make it durable now
    # Complete: it opens with a checkpoint, lost no record but a torn last one, and was written in
    # this boot (after a power cut, records appended but not yet synced, never sent, may be gone:
    # resuming after the last one left would reuse their numbers without a trace).
    complete = scan.checkpoint is not None and scan.checkpoint.boot == fmt.boot_id() and not scan.damaged
    if not scan.valid:  # an empty file (killed right after creating it) tells nothing
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return None, not scan.damaged, moved
    if moved is None:
        return Segment(index, path, scan.valid, scan.ends, scan.start), complete, None
    ends = array("Q", (moved[end] for end in scan.ends))
    size = sum(end - start for start, end in scan.frames)
    return Segment(index, path, size, ends, moved.get(scan.start, 0), memory), complete, moved


def _keep_intact(
    found: Recovered, directory: Path, path: Path, data: bytes, scan: Scan
) -> tuple[bytearray | None, dict[int, int]]:
    """Replace a damaged file by its intact frames (the original goes to quarantine/); in memory
    when the card will not take it. Returns that memory (None: on the card) and where every
    frame's end moved."""
    lost, skipped = scan.lost_records(), sum(end - start for start, end, _ in scan.damaged)
    found.quarantined += 1
    found.skipped_records += lost
    found.skipped_bytes += skipped
    first = scan.damaged[0]
    log.error(
        "spool: %s is damaged (%s at byte %d; %d damaged stretch(es), %d bytes); about %d message(s) "
        "lost, the %d intact one(s) kept; the original moved to %s/",
        path.name,
        first[2],
        first[0],
        len(scan.damaged),
        skipped,
        lost,
        len(scan.ends),
        QUARANTINE,
    )
    keep = b"".join(data[start:end] for start, end in scan.frames)
    moved: dict[int, int] = {0: 0}
    position = 0
    for start, end in scan.frames:
        position += end - start
        moved[end] = position
    return (None if quarantine(directory, path, keep) else bytearray(keep)), moved


def _truncate(path: Path, size: int) -> None:
    try:
        with open(path, "r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())
    except OSError as exc:  # read-only: the spool reads no further than `size` anyway
        log.error("spool: cannot cut %s at byte %d (%s)", path.name, size, exc.strerror or exc)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())


def remove_temporaries(directory: Path) -> None:
    """Delete `*.tmp` files a crash left behind mid-replace."""
    with contextlib.suppress(OSError):
        for stale in directory.glob("*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
