"""Store and forward on disk: the publisher's write-ahead log, in order, bounded, surviving crashes.

Why an append-only segment log (`DiskSpool`) that every message goes through:

* The node must lose no `tracks`, `health` or `alerts` message when the uplink is down (a mast on
  a 4G link loses it for minutes), nor when it is killed at any moment, connected or not. So every
  message is appended here **before** it is handed to paho and stays until the broker acknowledges
  it (PUBACK/PUBCOMP): whatever was sent but not acknowledged when the process died is sent again
  by the next one. A database would be a dependency and write far more than we need.
* The Pi's SD card wears out with writes, so the log is cheap to keep. Each record is one
  `write()` before it is sent: that alone is safe against `kill -9` (the kernel holds the data).
  `fdatasync`, which only matters for a power cut, runs every `fsync_interval_s` or `fsync_every`
  records, not per message: about one sync a second at the node's normal rate instead of five,
  and a third of the card writes (docs/performance.md). A power cut can lose up to that second of
  records, sent or not; `seq` stays safe (below). With `sync_before_send` (a group commit: append
  what is queued, one sync, then send) nothing sent is lost, for more writes and latency.
  Acknowledgements cost no write at all: the acknowledged position (`cursor.json`, overwritten in
  place) is saved at most once a second without fsync; losing it only means sending some messages
  twice. A segment is deleted once every record in it is acknowledged, except the newest, which
  the log keeps appending to.
* A torn last record (a power cut, or `kill -9` in the middle of a write) is cut off by its CRC and
  counted.
* `seq` continues exactly across a crash: every segment starts with a checkpoint (the last `seq`
  written per topic before it), so the newest segment and its records tell where each topic
  continues (`last_seqs`); a number is used only once its message is in the log, so nothing a
  consumer may have seen is ever numbered twice, and nothing is skipped. Only within one boot of
  the kernel (the checkpoint holds its id): after a power cut the unsynced tail may be gone, so
  the sequence store's reserved block decides, and the consumer sees a gap.
* Records are framed: magic, length, CRC32 of the body. A segment damaged elsewhere than at its
  tail is moved to `quarantine/` (for a post-mortem) and the records before the damage are kept; a
  damaged spool never stops the node.
* Fixed-size segments make the size bound cheap: when the spool is full the *oldest* segment is
  deleted (oldest messages first) and every unacknowledged record in it is counted in
  `dropped_full`.
* If the card cannot be written (full, read-only), messages are kept in memory segments, still
  delivered in order but not crash-safe, and the disk is tried again at the next segment.

The frame and segment file layout is in `spool_segment.py`; the interface and the in-memory
variant in `spool.py`.
"""

from __future__ import annotations

import logging
import os
import time
from array import array
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from cuas_node.publish.seqstore import fsync_dir
from cuas_node.publish.spool_segment import (
    Checkpoint,
    CursorFile,
    Record,
    Segment,
    boot_id,
    read_frame,
    recover,
    segment_path,
)

# The spool's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.spool")

_CURSOR = "cursor.json"  # the saved delivery (acknowledged) position


class DiskSpool:
    """The on-disk segment log (see the module docstring for the why). One thread only."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int | None = None,
        fsync_every: int = 64,
        fsync_interval_s: float = 1.0,
        cursor_interval_s: float = 1.0,
        sync_before_send: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(16 * 1024, min(4 * 1024 * 1024, max_bytes // 16))
        self.fsync_every = fsync_every
        self.fsync_interval_s = fsync_interval_s
        self.cursor_interval_s = cursor_interval_s
        self.sync_before_send = sync_before_send
        self.dropped_full = 0
        self.quarantined = 0
        self.spooled = 0  # records appended since start
        self.torn = 0  # partly written last records cut off when opening
        self.syncs = 0  # fdatasync/fsync calls on segments
        self._segments: deque[Segment] = deque()
        self._fd: int | None = None  # append fd of the newest segment (None: not open, or in memory)
        self._unsynced = 0
        self._unsynced_since = 0.0
        self._durable: tuple[int, int] = (0, 0)  # records that start before this are on the card
        self._read_fds: dict[int, int] = {}
        self._commit: tuple[int, int] = (0, 0)  # (segment index, offset) acknowledged up to here
        self._read: tuple[int, int] = (0, 0)  # next record to hand out
        self._cursor = CursorFile(self.directory / _CURSOR)
        self._cursor_dirty = False
        self._cursor_saved_at = 0.0
        self._pending = 0
        self._last_seqs: dict[str, int] = {}  # the last seq appended per topic
        self._trusted = True  # whether _last_seqs covers every message this log ever held
        self._in_memory = False  # the card failed: appending to memory segments
        self._next_index = 1  # above every segment and cursor ever seen, so no number is reused
        self.directory.mkdir(parents=True, exist_ok=True)
        self._open()

    # -- opening, scanning, quarantine ---------------------------------------------------------

    def _open(self) -> None:
        found = recover(self.directory, self._cursor)
        self.torn, self.quarantined = found.torn, found.quarantined
        self._last_seqs, self._trusted, self._next_index = found.last_seqs, found.trusted, found.next_index
        self._segments.extend(found.segments)
        if not self._segments:
            return
        newest = self._segments[-1]
        self._durable = (newest.index, newest.size)
        self._commit = self._read = found.commit
        self._pending = sum(s.records_after(self._offset_in(s, self._commit)) for s in self._segments)
        if self._pending:
            log.info(
                "spool %s: %d message(s) (%d bytes) waiting from before the restart",
                self.directory,
                self._pending,
                self.size_bytes,
            )

    # -- seq across restarts -------------------------------------------------------------------

    def last_seqs(self) -> dict[str, int] | None:
        """The last `seq` per topic the log holds, None when it cannot be known (older format or
        damage): a message is numbered only once written here, so it continues at +1."""
        return dict(self._last_seqs) if self._trusted else None

    def begin(self, next_seqs: Mapping[str, int]) -> None:
        """Start this process's segment, its checkpoint covering `next_seqs` (the sequence store's
        next numbers), so that the next start knows every topic even if nothing is written."""
        for name, value in next_seqs.items():
            self._last_seqs[name] = max(value - 1, self._last_seqs.get(name, 0))
        self._new_segment()
        self._trusted = True
        self._drop_empty_head()

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
        if (
            tail is None
            or (tail.memory is None and self._fd is None)
            or (tail.ends and tail.size + len(frame) > self.segment_bytes)
        ):
            tail = self._new_segment()
        while self.size_bytes + len(frame) > self.max_bytes and len(self._segments) > 1:
            self._drop_oldest()
        if tail.memory is None:
            assert self._fd is not None
            try:
                written = os.write(self._fd, frame)
                if written != len(frame):
                    raise OSError(f"short write ({written} of {len(frame)} bytes)")
            except OSError as exc:
                tail = self._to_memory(f"cannot write {tail.path.name} ({exc})")
        if tail.memory is not None:
            tail.memory += frame
        else:
            if not self._unsynced:
                self._unsynced_since = time.monotonic()
            self._unsynced += 1
        tail.size += len(frame)
        tail.ends.append(tail.size)
        self._last_seqs[record.name] = record.seq
        self._pending += 1
        self.spooled += 1
        if self._unsynced >= self.fsync_every:
            self._sync()

    def _new_segment(self) -> Segment:
        """The next segment, opened with its checkpoint; in memory if the card cannot be written."""
        self._close_fd()
        index = self._segments[-1].index + 1 if self._segments else self._next_index
        self._next_index = index + 1
        path = segment_path(self.directory, index)
        frame = Checkpoint(dict(self._last_seqs), boot_id()).encode()
        segment = Segment(index, path, len(frame), array("Q"), len(frame))
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o640)
            if os.write(self._fd, frame) != len(frame):
                raise OSError("short write")
            self._fdatasync()
            fsync_dir(self.directory)  # the new file itself must survive a power cut
        except OSError as exc:
            self._close_fd()
            path.unlink(missing_ok=True)
            segment = self._memory_segment(index, f"cannot create {path.name} ({exc})")
        else:
            if self._in_memory:
                self._in_memory = False
                log.warning("spool: writing to %s again; messages are crash-safe again", self.directory)
            self._durable = (index, segment.size)
        self._segments.append(segment)
        if len(self._segments) == 1:
            self._commit = self._read = (index, segment.start)
        return segment

    def _to_memory(self, why: str) -> Segment:
        self._close_fd()
        tail = self._segments[-1]
        segment = self._memory_segment(tail.index + 1, why)
        self._segments.append(segment)
        return segment

    def _memory_segment(self, index: int, why: str) -> Segment:
        if not self._in_memory:
            self._in_memory = True
            log.error(
                "spool: %s; keeping messages in memory (delivered, but lost if the node dies) and "
                "retrying the card at the next segment",
                why,
            )
        return Segment(index, segment_path(self.directory, index), 0, array("Q"), 0, bytearray())

    def _drop_oldest(self) -> None:
        oldest = self._segments.popleft()
        lost = oldest.records_after(self._offset_in(oldest, self._commit))
        self.dropped_full += lost
        self._pending -= lost
        self._forget(oldest)
        head = self._segments[0]
        self._commit = max(self._commit, (head.index, head.start))
        self._read = max(self._read, self._commit)
        if lost:
            log.warning("spool full (%d bytes): dropped the %d oldest message(s)", self.max_bytes, lost)

    def _sync(self) -> None:
        if self._fd is not None and self._unsynced:
            try:
                self._fdatasync()
            except OSError as exc:
                log.error("spool: fdatasync failed (%s)", exc)
            tail = self._segments[-1]
            self._durable = (tail.index, tail.size)
        self._unsynced = 0

    def _fdatasync(self) -> None:
        assert self._fd is not None
        self.syncs += 1
        os.fdatasync(self._fd)

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
        """The next record to send, never before it is on the card (the group commit's sync)."""
        while self.has_unsent():
            index, offset = self._read
            segment = self._segment(index)
            if segment is None or offset >= segment.size:
                following = [s for s in self._segments if s.index > index]
                if not following:
                    return None
                self._read = (following[0].index, following[0].start)
                continue
            if (
                self.sync_before_send
                and segment.memory is None
                and self._unsynced
                and (index, offset) >= self._durable
            ):
                self._sync()
            fd = None if segment.memory is not None else self._read_fd(segment)
            record, end = read_frame(segment, fd, offset)
            self._read = (index, end)
            if record is not None:
                return record, (index, end)
        return None

    def commit(self, token: object) -> None:
        """Everything up to `token` is with the broker (or dropped as stale): forget it."""
        assert isinstance(token, tuple)
        index, offset = token
        if (index, offset) <= self._commit:
            return
        for segment in self._segments:
            if segment.index > index:
                break
            stop = offset if segment.index == index else segment.size
            self._pending -= segment.records_after(self._offset_in(segment, self._commit))
            self._pending += segment.records_after(stop)
        self._commit = (index, offset)
        self._cursor_dirty = True
        self._drop_empty_head()
        self._maybe_save_cursor()

    def _offset_in(self, segment: Segment, position: tuple[int, int]) -> int:
        """`position` as an offset into `segment`: its end if before, its start if after."""
        if position[0] == segment.index:
            return position[1]
        return segment.size if position[0] > segment.index else segment.start

    def _drop_empty_head(self) -> None:
        """Delete fully acknowledged segments, all but the newest (the one being appended to)."""
        while len(self._segments) > 1:
            head = self._segments[0]
            if head.records_after(self._offset_in(head, self._commit)):
                return
            self._segments.popleft()
            self._forget(head)
            nxt = self._segments[0]
            self._commit = max(self._commit, (nxt.index, nxt.start))
            self._read = max(self._read, self._commit)
            self._cursor_dirty = True

    def _forget(self, segment: Segment) -> None:
        self._close_read_fd(segment.index)
        if segment.memory is None:
            segment.path.unlink(missing_ok=True)

    def rewind(self) -> None:
        """The connection dropped: whatever was handed out but not committed goes out again."""
        self._read = self._commit

    def tick(self) -> None:
        """Called a few times a second: the time-based fsync and cursor save."""
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
        try:
            self._cursor.save(self._commit, sync=force)
        except OSError as exc:
            log.error("spool: cannot save the delivery position (%s)", exc)

    def close(self) -> None:
        """Clean stop: everything on disk and the exact delivery position saved."""
        self._close_fd()
        self._cursor_dirty = True
        self._maybe_save_cursor(force=True)
        self._cursor.close()
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
        """Messages in the spool not yet acknowledged by the broker (in flight included)."""
        return self._pending

    @property
    def size_bytes(self) -> int:
        """Bytes the segments take (on the card, or in memory), acknowledged records included."""
        return sum(s.size for s in self._segments)
