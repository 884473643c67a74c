"""Per-topic sequence numbers and the session counter, persisted without wearing out the SD card.

Consumers use `seq` to notice lost messages (a gap) and to drop repeats, so a number must never be
handed out twice, not even across a power cut. Writing the file on every message would do that
but would also write the Pi's SD card several times a second for years. Instead the store
*reserves* a block: the file holds a high-water mark (`next + BLOCK`) and is rewritten only when
the block is used up. A clean `close()` writes the exact next value and `clean: true`; after a
crash the file still says `clean: false`, so the next start resumes at the high-water mark. The
numbers in between are never used: the consumer sees a gap, which is honest, because messages
may really have been lost in the crash.

Unless the spool says better: with a disk spool every message is in its write-ahead log before
it is sent, so the log knows the last number used per topic (`resume`) and the next start
continues right after it, without a gap (a number that was handed out but never reached the log
was never sent, so using it again repeats nothing a consumer saw). The file records whether the
run that wrote it had such a log (`wal`); after a crash of a run without one, or of an older
version, the reserved mark stays the rule.

Every write goes to a temporary file that is fsync'ed and then atomically renamed over the old
one (followed by an fsync of the directory), so a power cut leaves either the old or the new
file, never a torn one. If the state directory cannot be written, the node keeps publishing
with in-memory numbers and logs the problem: losing dedupe across restarts is better than
losing tracks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "mqtt-seq.json"
BLOCK = 1000
_FORMAT = 1


class SequenceStore:
    """Hands out `next(name)` numbers (1, 2, 3, ... per name) and owns the session counter.

    Opening the store counts one process start: `session` is the previous session + 1.
    `resume` is the spool's last number used per topic (exact even after a crash); `wal` says
    whether this run writes every message to such a log before sending it.
    Thread-safe: tracks and health may be published from different threads.
    """

    def __init__(
        self, state_dir: Path, block: int = BLOCK, resume: Mapping[str, int] | None = None, wal: bool = False
    ) -> None:
        if block < 1:
            raise ValueError("block must be positive")
        self.path = Path(state_dir) / STATE_FILE
        self._block = block
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._closed = False
        self._wal = wal
        self.persistent = True
        previous = self._load()
        self.session: int = int(previous.get("session", 0)) + 1
        clean = previous.get("clean") is True
        for name, entry in previous.get("seq", {}).items():
            # After a clean stop `next` is exact; after a crash only the reservation is safe.
            start = int(entry["next"]) if clean else int(entry["reserved"])
            self._next[name] = start
            self._reserved[name] = start
        # After a crash the log is exact if the crashed run had one; without a file it is all we know.
        if resume is not None and (clean or previous.get("wal") is True or not previous):
            for name, last in resume.items():
                start = last + 1
                if clean:  # exact too; the larger wins should a message have failed to reach the log
                    start = max(start, self._next.get(name, 1))
                self._next[name] = start
                self._reserved[name] = start
        with self._lock:
            self._reserve_all()

    def next(self, name: str) -> int:
        """The number for the next message on `name`; never repeats, even across crashes."""
        with self._lock:
            if self._closed:
                raise RuntimeError("SequenceStore is closed")
            value = self._next.get(name, 1)
            self._next[name] = value + 1
            if value + 1 > self._reserved.get(name, 0):
                self._reserve_all()
            return value

    def peek(self, name: str) -> int:
        """The number `next(name)` would return, without using it up."""
        with self._lock:
            return self._next.get(name, 1)

    def next_values(self) -> dict[str, int]:
        """`peek` of every topic the store knows."""
        with self._lock:
            return dict(self._next)

    def close(self) -> None:
        """Record the exact next values and mark the stop as clean (no gap on the next start)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._write(clean=True)

    # -- internals (called with the lock held) ---------------------------------------------------

    def _reserve_all(self) -> None:
        for name, value in self._next.items():
            self._reserved[name] = value + self._block
        # A name seen for the first time starts at 1; reserve its first block too.
        self._write(clean=False)

    def _document(self, clean: bool) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "session": self.session,
            "clean": clean,
            "wal": self._wal,
            "seq": {
                name: {"next": self._next[name], "reserved": self._reserved.get(name, self._next[name])}
                for name in sorted(self._next)
            },
        }

    def _write(self, clean: bool) -> None:
        if not self.persistent:
            return
        data = json.dumps(self._document(clean), indent=1, sort_keys=True).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            self.persistent = False
            log.error(
                "cannot write %s (%s): sequence numbers and session will restart after a reboot",
                self.path,
                exc.strerror or exc,
            )

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.error("cannot read %s (%s): starting a fresh sequence", self.path, exc.strerror or exc)
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("seq", {}), dict):
                raise ValueError("not a sequence-state object")
            for entry in data.get("seq", {}).values():
                int(entry["next"]), int(entry["reserved"])
            int(data.get("session", 0))
        except (ValueError, TypeError, KeyError) as exc:
            # Keep the damaged file for a post-mortem instead of silently overwriting it.
            with contextlib.suppress(OSError):
                os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
            log.error("%s is damaged (%s): starting a fresh sequence", self.path, exc)
            return {}
        return data


def fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (ext4 may otherwise lose it on a power cut)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
