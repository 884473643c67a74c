"""The spool's writes to the card: the newest segment's file, its appends and syncs, and failures.

Why apart from `DiskSpool` (`disk_spool.py`, the policy: what goes where, delivery, the bound):
everything that touches the card for writing, and every way it can fail, is here in one place,
and none of it raises. A failure (full, read-only, I/O error) is reported to the spool's
`DiskFault` (one log line, `health.spool.state`) and returned as "did not work", so the spool puts
the message in memory instead; a segment that could not be created is removed again (a full card
must not collect empty files); a record that was only partly written is cut off again (so the
file ends on a whole record). Files are created 0600 whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import time
from array import array
from collections.abc import Mapping
from pathlib import Path

from cuas_node.publish.seqstore import fsync_dir
from cuas_node.publish.spool_fault import DiskFault
from cuas_node.publish.spool_segment import Checkpoint, Segment, boot_id, create_private, segment_path


class CardWriter:
    """Appends to one segment file at a time (see the module docstring for the why)."""

    def __init__(self, directory: Path, fault: DiskFault, fsync_every: int, fsync_interval_s: float) -> None:
        self.directory = directory
        self.fault = fault
        self.fsync_every = fsync_every
        self.fsync_interval_s = fsync_interval_s
        self.syncs = 0  # fdatasync calls on segments
        self.unsynced = 0  # records written since the last sync
        self.durable: tuple[int, int] = (0, 0)  # records that start before this are on the card
        self._unsynced_since = 0.0
        self._fd: int | None = None
        self._segment: Segment | None = None  # the segment `_fd` appends to

    @property
    def is_open(self) -> bool:
        """Whether a segment file is open for appending (False: none yet, or the card failed)."""
        return self._fd is not None

    def create(self, index: int, last_seqs: Mapping[str, int]) -> Segment | None:
        """Segment `index` on the card with its checkpoint (`last_seqs`) synced; None, and no file
        left behind, when the card will not take it."""
        self.close()
        path = segment_path(self.directory, index)
        frame = Checkpoint(dict(last_seqs), boot_id()).encode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = create_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(f"short write ({written} of {len(frame)} bytes)")
            self.syncs += 1
            os.fdatasync(self._fd)
            fsync_dir(self.directory)  # the new file itself must survive a power cut
        except OSError as exc:
            self.drop()
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            self.fault.failed("segment", f"cannot create {path.name}", exc)
            return None
        self.fault.succeeded("segment")
        self._segment = Segment(index, path, len(frame), array("Q"), len(frame))
        self.durable = (index, len(frame))
        return self._segment

    def write(self, segment: Segment, frame: bytes) -> bool:
        """Append `frame` to `segment` (the open one); False when the card failed (the file is
        closed and left ending on a whole record)."""
        if self._fd is None or segment is not self._segment:
            return False
        try:
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(f"short write ({written} of {len(frame)} bytes)")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, segment.size)  # no partial record left behind
            self.fault.failed("segment", f"cannot write {segment.path.name}", exc)
            self.close()
            return False
        if not self.unsynced:
            self._unsynced_since = time.monotonic()
        self.unsynced += 1
        return True

    def written(self) -> None:
        """After the spool recorded a written frame: sync every `fsync_every` records."""
        if self.unsynced >= self.fsync_every:
            self.sync()

    def sync_due(self) -> bool:
        """Whether records have waited `fsync_interval_s` for a sync."""
        return bool(self.unsynced) and time.monotonic() - self._unsynced_since >= self.fsync_interval_s

    def sync(self) -> None:
        """`fdatasync` what was appended; on failure the file is closed (what follows goes to a
        new segment, or memory)."""
        if self._fd is not None and self.unsynced and self._segment is not None:
            try:
                self.syncs += 1
                os.fdatasync(self._fd)
            except OSError as exc:
                self.fault.failed("segment", f"cannot sync {self._segment.path.name}", exc)
                self.drop()
            else:
                self.durable = (self._segment.index, self._segment.size)
        self.unsynced = 0

    def close(self) -> None:
        """Sync and close the open segment file, if any."""
        self.sync()
        self.drop()

    def drop(self) -> None:
        """Close without syncing."""
        fd, self._fd, self._segment = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class CardReader:
    """One read-only fd at a time, on the segment being delivered; errors are the caller's."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}

    def fd(self, segment: Segment) -> int:
        fd = self._fds.get(segment.index)
        if fd is None:
            self.close_all()
            fd = self._fds[segment.index] = os.open(segment.path, os.O_RDONLY)
        return fd

    def close(self, index: int) -> None:
        fd = self._fds.pop(index, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close_all(self) -> None:
        for index in list(self._fds):
            self.close(index)
