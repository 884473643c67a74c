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
* `seq` continues exactly across a crash: every segment starts with a checkpoint (the last `seq`
  written per topic before it), so the newest segment and its records tell where each topic
  continues (`last_seqs`); a number is used only once its message is in the log, so nothing a
  consumer may have seen is ever numbered twice, and nothing is skipped. Only within one boot of
  the kernel (the checkpoint holds its id): after a power cut the unsynced tail may be gone, so
  the sequence store's reserved block decides, and the consumer sees a gap.
* Damage costs only the records it hits (`spool_recovery.py`), a torn last record is cut off:
  a damaged spool never stops the node.
* Fixed-size segments make the size bound cheap: when the spool is full the *oldest* segment is
  deleted (oldest messages first) and every unacknowledged record in it is counted in
  `dropped_full`.
* A card that cannot be written (full, read-only, not ours) must not silence the node: nothing
  here raises into the outbox. New messages go to memory segments, under the same size bound,
  still delivered in order but not crash-safe; the spool reports `degraded` and logs it once
  (`spool_fault.py`), tries the card again every few seconds without leaving empty files, and
  goes back to the card by itself.

The frame and segment file layout is in `spool_segment.py`; the interface and the in-memory
variant in `spool.py`; the writes to the card and their failures in `spool_writer.py`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from array import array
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from cuas_node.publish.seqstore import fsync_dir
from cuas_node.publish.spool_fault import DiskFault
from cuas_node.publish.spool_recovery import recover
from cuas_node.publish.spool_segment import CursorFile, Record, Segment, read_frame, segment_path
from cuas_node.publish.spool_writer import CardReader, CardWriter

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
        retry_s: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(16 * 1024, min(4 * 1024 * 1024, max_bytes // 16))
        self.cursor_interval_s = cursor_interval_s
        self.sync_before_send = sync_before_send
        self.dropped_full = 0
        self.quarantined = 0
        self.spooled = 0  # records appended since start
        self.torn = 0  # partly written last records cut off when opening
        self.skipped_records = 0  # messages lost to damaged bytes (an estimate) or unreadable files
        self.skipped_bytes = 0  # damaged bytes skipped when opening
        self._segments: deque[Segment] = deque()
        self._undeleted: list[Path] = []  # delivered segment files the card would not delete yet
        self._fault = DiskFault(self.directory, retry_s)
        self._writer = CardWriter(self.directory, self._fault, fsync_every, fsync_interval_s)
        self._reader = CardReader()
        self._commit: tuple[int, int] = (0, 0)  # (segment index, offset) acknowledged up to here
        self._read: tuple[int, int] = (0, 0)  # next record to hand out
        self._cursor = CursorFile(self.directory / _CURSOR)
        self._cursor_dirty = False
        self._cursor_saved_at = 0.0
        self._pending = 0
        self._last_seqs: dict[str, int] = {}  # the last seq appended per topic
        self._trusted = True  # whether _last_seqs covers every message this log ever held
        self._next_index = 1  # above every segment and cursor ever seen, so no number is reused
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as exc:  # keep running in memory; the start-up check names the cause
            self._fault.failed("segment", "cannot open the spool", exc)

    # -- opening, state ------------------------------------------------------------------------

    def _open(self) -> None:
        found = recover(self.directory, self._cursor)
        self.torn, self.quarantined = found.torn, found.quarantined
        self.skipped_records, self.skipped_bytes = found.skipped_records, found.skipped_bytes
        self._last_seqs, self._trusted, self._next_index = found.last_seqs, found.trusted, found.next_index
        self._segments.extend(found.segments)
        if not self._segments:
            return
        self._commit = self._read = found.commit
        self._pending = sum(s.records_after(self._offset_in(s, self._commit)) for s in self._segments)
        if self._pending:
            log.info(
                "spool %s: %d message(s) (%d bytes) waiting from before the restart",
                self.directory,
                self._pending,
                self.size_bytes,
            )

    def health(self) -> dict[str, int | str]:
        """For `health.spool`: `state` (`ok` | `degraded`), `error` while degraded, and what damage
        cost (`skipped_records`, an estimate; `skipped_bytes`)."""
        counts = {"skipped_records": self.skipped_records, "skipped_bytes": self.skipped_bytes}
        return {**self._fault.health(), **counts}

    @property
    def state(self) -> str:
        """`ok`, or `degraded` while the card cannot be written (new messages kept in memory)."""
        return self._fault.state

    @property
    def syncs(self) -> int:
        """fdatasync calls on segments since start."""
        return self._writer.syncs

    # -- seq across restarts -------------------------------------------------------------------

    def last_seqs(self) -> dict[str, int] | None:
        """The last `seq` per topic the log holds, None when it cannot be known (older format or
        damage): a message is numbered only once written here, so it continues at +1."""
        return dict(self._last_seqs) if self._trusted else None

    def seen_seqs(self) -> dict[str, int]:
        """The highest `seq` per topic the log shows, also when `last_seqs` cannot say it was the
        last one used (after a power cut, or damage): numbers the node used, so a lower bound."""
        return dict(self._last_seqs)

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
            or (tail.memory is None and not self._writer.is_open)
            or (tail.ends and tail.size + len(frame) > self.segment_bytes)
        ):
            tail = self._new_segment()
        while self.size_bytes + len(frame) > self.max_bytes and len(self._segments) > 1:
            self._drop_oldest()
        if tail.memory is None and not self._writer.write(tail, frame):
            tail = self._add(self._memory_segment(tail.index + 1))  # the card failed mid-segment
        if tail.memory is not None:
            tail.memory += frame
        tail.size += len(frame)
        tail.ends.append(tail.size)
        self._last_seqs[record.name] = record.seq
        self._pending += 1
        self.spooled += 1
        self._writer.written()

    def _new_segment(self) -> Segment:
        """The next segment: on the card with its checkpoint, or in memory while the card fails
        (tried again every `retry_s`, not for every segment)."""
        self._writer.close()
        index = self._segments[-1].index + 1 if self._segments else self._next_index
        segment = self._writer.create(index, self._last_seqs) if self._fault.may_try("segment") else None
        return self._add(segment or self._memory_segment(index))

    def _add(self, segment: Segment) -> Segment:
        self._next_index = segment.index + 1
        self._segments.append(segment)
        if len(self._segments) == 1:
            self._commit = self._read = (segment.index, segment.start)
        return segment

    def _memory_segment(self, index: int) -> Segment:
        return Segment(index, segment_path(self.directory, index), 0, array("Q"), 0, bytearray())

    def _retry_card(self) -> None:
        """While the card fails, try it again every `retry_s`: once it works, new messages are on it
        again without waiting for the memory segment to fill, and delivered files are deleted."""
        if self._undeleted and self._fault.may_try("delete"):
            self._delete()
        tail = self._segments[-1] if self._segments else None
        if tail is not None and tail.memory is not None and self._fault.may_try("segment"):
            segment = self._writer.create(tail.index + 1, self._last_seqs)
            if segment is not None:
                self._add(segment)

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
                and self._writer.unsynced
                and (index, offset) >= self._writer.durable
            ):
                self._writer.sync()
            try:
                fd = None if segment.memory is not None else self._reader.fd(segment)
                record, end = read_frame(segment, fd, offset)
            except (OSError, ValueError) as exc:
                self._cut(segment, offset, exc)
                continue
            self._read = (index, end)
            if record is not None:
                return record, (index, end)
        return None

    def _cut(self, segment: Segment, offset: int, exc: OSError | ValueError) -> None:
        """The card no longer gives back what was written from `offset` on (an I/O error, bytes
        changed since the scan): skip the rest of that segment, counted, rather than stop."""
        lost = segment.records_after(offset)
        del segment.ends[len(segment.ends) - lost :]
        segment.size = offset
        self._pending -= lost
        self.skipped_records += lost
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        log.error(
            "spool: cannot read %s at byte %d (%s); its %d remaining message(s) skipped",
            segment.path.name,
            offset,
            why,
            lost,
        )
        if segment is self._segments[-1]:
            self._writer.close()  # new messages go to a new segment

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
        self._reader.close(segment.index)
        if segment.memory is None:
            self._undeleted.append(segment.path)
            self._delete()

    def _delete(self) -> None:
        """Delete delivered segment files; those the card refuses are tried again with it."""
        while self._undeleted:
            try:
                self._undeleted[0].unlink(missing_ok=True)
            except OSError as exc:
                self._fault.failed("delete", f"cannot delete {self._undeleted[0].name}", exc)
                return
            self._undeleted.pop(0)
        self._fault.succeeded("delete")

    def rewind(self) -> None:
        """The connection dropped: whatever was handed out but not committed goes out again."""
        self._read = self._commit

    def tick(self) -> None:
        """Called a few times a second: the time-based fsync, a retry of a failing card, the
        cursor save."""
        if self._writer.sync_due():
            self._writer.sync()
        self._retry_card()
        self._maybe_save_cursor()

    def _maybe_save_cursor(self, force: bool = False) -> None:
        if not self._cursor_dirty or not self._segments:
            return
        now = time.monotonic()
        if not force and (
            now - self._cursor_saved_at < self.cursor_interval_s or not self._fault.may_try("cursor")
        ):
            return
        self._cursor_saved_at = now
        self._cursor_dirty = False
        try:
            self._cursor.save(self._commit, sync=force)
        except OSError as exc:
            self._fault.failed("cursor", f"cannot save {_CURSOR}", exc)
        else:
            self._fault.succeeded("cursor")

    def close(self) -> None:
        """Clean stop: everything on disk and the exact delivery position saved."""
        self._writer.close()
        self._cursor_dirty = True
        self._maybe_save_cursor(force=True)
        with contextlib.suppress(OSError):
            self._cursor.close()
        self._reader.close_all()
        fsync_dir(self.directory)

    def _segment(self, index: int) -> Segment | None:
        for segment in self._segments:
            if segment.index == index:
                return segment
        return None

    @property
    def pending(self) -> int:
        """Messages in the spool not yet acknowledged by the broker (in flight included)."""
        return self._pending

    @property
    def size_bytes(self) -> int:
        """Bytes the segments take (on the card, or in memory), acknowledged records included."""
        return sum(s.size for s in self._segments)
