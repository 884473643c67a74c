"""Store and forward: messages the broker has not taken yet, in order, bounded, surviving crashes.

Why an append-only segment log on disk (`DiskSpool`):

* The node must not lose tracks or alerts while the uplink is down (a mast on a 4G link loses it
  for minutes), nor when it is killed or loses power during such an outage. Memory alone cannot
  survive either; a database would be a dependency and write far more than we need.
* The Pi's SD card wears out with writes. The spool is written **only while the broker is
  unreachable** (or while a backlog is being delivered); with a healthy link nothing touches the
  disk. Records are appended with one `write()` each (safe against `kill -9`: the kernel holds
  the data) and `fdatasync`ed in batches (every `fsync_every` records or `fsync_interval_s`
  seconds, and at a clean stop). A power cut can therefore lose the last batch (at most 1 s or
  64 records with the defaults); a torn last record is detected by its CRC and cut off.
* Records are framed: magic, length, CRC32 of the body. A segment that is damaged elsewhere than
  at its tail is moved to `quarantine/` (for a post-mortem) and the records before the damage are
  kept; a damaged spool never stops the node.
* Fixed-size segments make the size bound cheap: when the spool is full the *oldest* segment is
  deleted (oldest messages first) and every undelivered record in it is counted in
  `dropped_full`. A segment whose records have all been acknowledged is deleted at once.
* The delivery position (`cursor`) is kept in memory and saved at most once a second while a
  backlog is being delivered, and at a clean stop, without fsync. After a crash delivery resumes at
  the last saved position, so a few messages may be delivered twice with the same `seq`:
  delivery is **at least once**, consumers drop repeats of `(node_id, topic, seq)`.

The frame and segment file layout is in `spool_segment.py`; the interface and the in-memory
variant in `spool.py`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from array import array
from collections import deque
from pathlib import Path

from cuas_node.publish.seqstore import fsync_dir
from cuas_node.publish.spool_segment import (
    QUARANTINE,
    Record,
    Segment,
    list_segments,
    quarantine,
    read_record,
    remove_temporaries,
    scan_frames,
    segment_path,
)

# The spool's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.spool")

_CURSOR = "cursor.json"  # the saved delivery position


class DiskSpool:
    """The on-disk segment log (see the module docstring for the why)."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int | None = None,
        fsync_every: int = 64,
        fsync_interval_s: float = 1.0,
        cursor_interval_s: float = 1.0,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(16 * 1024, min(4 * 1024 * 1024, max_bytes // 16))
        self.fsync_every = fsync_every
        self.fsync_interval_s = fsync_interval_s
        self.cursor_interval_s = cursor_interval_s
        self.dropped_full = 0
        self.quarantined = 0
        self.spooled = 0
        self._segments: deque[Segment] = deque()
        self._fd: int | None = None  # append fd of the last segment
        self._unsynced = 0
        self._unsynced_since = 0.0
        self._read_fds: dict[int, int] = {}
        self._commit: tuple[int, int] = (0, 0)  # (segment index, offset) acknowledged up to here
        self._read: tuple[int, int] = (0, 0)  # next record to hand out
        self._cursor_dirty = False
        self._cursor_saved_at = 0.0
        self._pending = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._open()

    # -- opening, scanning, quarantine ---------------------------------------------------------

    def _open(self) -> None:
        remove_temporaries(self.directory)
        paths = list_segments(self.directory)
        cursor = self._load_cursor()
        for i, (index, path) in enumerate(paths):
            if index < cursor[0]:
                path.unlink(missing_ok=True)  # fully delivered before the crash; not yet deleted
                continue
            segment = self._scan(index, path, last=i == len(paths) - 1)
            if segment is None:
                continue
            self._segments.append(segment)
        if self._segments:
            first = self._segments[0]
            offset = cursor[1] if cursor[0] == first.index else 0
            if offset and offset not in set(first.ends):
                offset = 0  # not a record boundary: deliver the whole segment again (at least once)
            self._commit = self._read = (first.index, offset)
            self._pending = sum(len(s.ends) for s in self._segments) - (
                len(first.ends) - first.records_after(offset)
            )
            self._drop_empty_head()
        if self._pending:
            log.info(
                "spool %s: %d message(s) (%d bytes) waiting from before the restart",
                self.directory,
                self._pending,
                self.size_bytes,
            )

    def _scan(self, index: int, path: Path, last: bool) -> Segment | None:
        """Read a segment's frames; cut a torn tail, quarantine real damage, keep what is valid."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.error("spool: cannot read %s (%s); moved aside", path, exc.strerror or exc)
            self._quarantine(path, None)
            return None
        ends, offset, problem = scan_frames(data)
        if problem == "torn" and last:
            # What a power cut leaves: the last write did not make it whole. Normal; cut it off.
            log.warning("spool: %s ends in a partly written record; cut at byte %d", path.name, offset)
            with open(path, "r+b") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())
        elif problem:
            log.error(
                "spool: %s is damaged at byte %d (%s); moved to %s/, %d message(s) before the damage kept",
                path.name,
                offset,
                problem,
                QUARANTINE,
                len(ends),
            )
            self._quarantine(path, data[:offset])
        if not ends:
            path.unlink(missing_ok=True)
            return None
        return Segment(index, path, offset, ends)

    def _quarantine(self, path: Path, keep: bytes | None) -> None:
        self.quarantined += 1
        quarantine(self.directory, path, keep)

    def _load_cursor(self) -> tuple[int, int]:
        path = self.directory / _CURSOR
        try:
            data = json.loads(path.read_bytes())
            return int(data["segment"]), int(data["offset"])
        except FileNotFoundError:
            return (0, 0)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("spool: %s is damaged (%s); delivering the whole spool again", path, exc)
            self._quarantine(path, None)
            return (0, 0)

    # -- writing -------------------------------------------------------------------------------

    def append(self, record: Record) -> None:
        frame = record.encode()
        if len(frame) > self.max_bytes:
            self.dropped_full += 1
            log.error(
                "spool: a %d-byte %s message is larger than the whole spool; dropped", len(frame), record.name
            )
            return
        tail = self._segments[-1] if self._segments else None
        if tail is None or self._fd is None or (tail.size and tail.size + len(frame) > self.segment_bytes):
            tail = self._new_segment()
        while self.size_bytes + len(frame) > self.max_bytes and len(self._segments) > 1:
            self._drop_oldest()
        assert self._fd is not None
        try:
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(f"short write ({written} of {len(frame)} bytes)")
        except OSError as exc:
            # Disk full or failing card: the message is lost, and must be counted as such.
            self.dropped_full += 1
            log.error("spool: cannot write %s (%s); message dropped", tail.path.name, exc)
            self._close_fd()
            return
        tail.size += len(frame)
        tail.ends.append(tail.size)
        self._pending += 1
        self.spooled += 1
        if not self._unsynced:
            self._unsynced_since = time.monotonic()
        self._unsynced += 1
        if self._unsynced >= self.fsync_every:
            self._sync()

    def _new_segment(self) -> Segment:
        self._close_fd()
        index = self._segments[-1].index + 1 if self._segments else max(1, self._commit[0])
        path = segment_path(self.directory, index)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        fsync_dir(self.directory)  # the new file itself must survive a power cut
        segment = Segment(index, path, os.fstat(self._fd).st_size, array("Q"))
        self._segments.append(segment)
        if len(self._segments) == 1:
            self._commit = self._read = (index, 0)
        return segment

    def _drop_oldest(self) -> None:
        oldest = self._segments.popleft()
        offset = self._commit[1] if self._commit[0] == oldest.index else 0
        lost = oldest.records_after(offset)
        self.dropped_full += lost
        self._pending -= lost
        self._close_read_fd(oldest.index)
        oldest.path.unlink(missing_ok=True)
        head = self._segments[0]
        self._commit = (head.index, 0)
        if self._read[0] <= oldest.index:
            self._read = (head.index, 0)
        self._cursor_dirty = True
        if lost:
            log.warning("spool full (%d bytes): dropped the %d oldest message(s)", self.max_bytes, lost)

    def _sync(self) -> None:
        if self._fd is not None and self._unsynced:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                log.error("spool: fdatasync failed (%s)", exc)
        self._unsynced = 0

    def _close_fd(self) -> None:
        if self._fd is not None:
            self._sync()
            os.close(self._fd)
            self._fd = None

    # -- reading and acknowledging -------------------------------------------------------------

    def has_unsent(self) -> bool:
        if not self._segments:
            return False
        index, offset = self._read
        last = self._segments[-1]
        return index < last.index or offset < last.size

    def next_unsent(self) -> tuple[Record, object] | None:
        while self.has_unsent():
            index, offset = self._read
            segment = self._segment(index)
            if segment is None or offset >= segment.size:
                following = [s for s in self._segments if s.index > index]
                if not following:
                    return None
                self._read = (following[0].index, 0)
                continue
            record, end = read_record(self._read_fd(segment), offset)
            self._read = (index, end)
            return record, (index, end)
        return None

    def commit(self, token: object) -> None:
        """Everything up to `token` is with the broker (or dropped as stale): forget it."""
        assert isinstance(token, tuple)
        index, offset = token
        if (index, offset) <= self._commit:
            return
        for segment in list(self._segments):
            if segment.index > index:
                break
            start = self._commit[1] if segment.index == self._commit[0] else 0
            stop = offset if segment.index == index else segment.size
            self._pending -= segment.records_after(start) - segment.records_after(stop)
        self._commit = (index, offset)
        self._cursor_dirty = True
        self._drop_empty_head()
        self._maybe_save_cursor()

    def _drop_empty_head(self) -> None:
        """Delete segments that are fully acknowledged (all of them once the spool is empty)."""
        while self._segments:
            head = self._segments[0]
            done = self._commit[0] > head.index or (
                self._commit[0] == head.index and self._commit[1] >= head.size
            )
            if not done:
                return
            if len(self._segments) == 1:
                if self._read != (head.index, head.size):
                    return
                self._close_fd()
            self._segments.popleft()
            self._close_read_fd(head.index)
            head.path.unlink(missing_ok=True)
            if self._segments:
                nxt = self._segments[0].index
                if self._commit[0] < nxt:
                    self._commit = (nxt, 0)
                if self._read[0] < nxt:
                    self._read = (nxt, 0)
            else:
                self._commit = self._read = (head.index + 1, 0)
                (self.directory / _CURSOR).unlink(missing_ok=True)
                self._cursor_dirty = False

    def rewind(self) -> None:
        """The connection dropped: whatever was handed out but not committed goes out again."""
        self._read = self._commit

    def tick(self) -> None:
        """Called about once a second: the time-based fsync and cursor save."""
        if self._unsynced and time.monotonic() - self._unsynced_since >= self.fsync_interval_s:
            self._sync()
        self._maybe_save_cursor()

    def _maybe_save_cursor(self, force: bool = False) -> None:
        if not self._cursor_dirty or not self._segments:
            return
        now = time.monotonic()
        if not force and now - self._cursor_saved_at < self.cursor_interval_s:
            return
        self._cursor_saved_at = now
        self._cursor_dirty = False
        path = self.directory / _CURSOR
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"segment": self._commit[0], "offset": self._commit[1]}))
            if force:
                with open(tmp, "rb") as handle:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.error("spool: cannot save the delivery position (%s)", exc)

    def close(self) -> None:
        """Clean stop: everything on disk and the exact delivery position saved."""
        self._close_fd()
        self._maybe_save_cursor(force=True)
        for index in list(self._read_fds):
            self._close_read_fd(index)
        fsync_dir(self.directory)

    def _segment(self, index: int) -> Segment | None:
        for segment in self._segments:
            if segment.index == index:
                return segment
        return None

    def _read_fd(self, segment: Segment) -> int:
        fd = self._read_fds.get(segment.index)
        if fd is None:
            for other in list(self._read_fds):
                self._close_read_fd(other)
            fd = self._read_fds[segment.index] = os.open(segment.path, os.O_RDONLY)
        return fd

    def _close_read_fd(self, index: int) -> None:
        fd = self._read_fds.pop(index, None)
        if fd is not None:
            os.close(fd)

    @property
    def pending(self) -> int:
        """Messages in the spool not yet acknowledged by the broker."""
        return self._pending

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)
