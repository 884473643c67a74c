"""Per-topic sequence numbers and the session, persisted without wearing out the SD card, and
never handed out twice even when the state file is lost or damaged.

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
version, the reserved mark stays the rule. When the file is missing or damaged and the log cannot
say where the last run stopped (after a power cut), the numbers the log shows (`seen`) are used
as a floor, a block further on: a gap, never a repeat.

The session must be new at every start, even when the file is lost, damaged or could not be
written (a consumer that saw a session again would take a restart for the same run). So it is
the larger of the stored session + 1 and the start time in whole seconds (Unix time): greater
than every session before it as long as the file is intact or the clock is set. A damaged file
is kept as `mqtt-seq.json.damaged-<time>` for a post-mortem and logged once; its modification
time (and a session number still legible in it) raise the floor further.

Every write goes to a temporary file (mode 0600 whatever the umask: like all the node's state,
nobody else's business) that is fsync'ed and then atomically renamed over the old one (followed by
an fsync of the directory), so a power cut leaves either the old or the new file, never a torn
one. A state directory that cannot be written at all is refused at start-up (`state_dir.py`); if
writing fails later (a full card), the node keeps publishing with in-memory numbers, logs it once
and writes again at the next reservation: losing the numbers' persistence is better than losing
tracks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "mqtt-seq.json"
BLOCK = 1000
FILE_MODE = 0o600
_FORMAT = 1
_LEGIBLE_SESSION = re.compile(rb'"session"\s*:\s*(\d{1,15})')


class SequenceStore:
    """Hands out `next(name)` numbers (1, 2, 3, ... per name) and owns the session.

    Opening the store counts one process start: `session` is greater than every session before
    (the module docstring says how). `resume` is the spool's last number used per topic (exact
    even after a crash); `seen` the highest numbers its log shows even when not exact (a floor);
    `wal` says whether this run writes every message to such a log before sending it.
    Thread-safe: tracks and health may be published from different threads.
    """

    def __init__(
        self,
        state_dir: Path,
        block: int = BLOCK,
        resume: Mapping[str, int] | None = None,
        wal: bool = False,
        seen: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if block < 1:
            raise ValueError("block must be positive")
        self.path = Path(state_dir) / STATE_FILE
        self._block = block
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._closed = False
        self._wal = wal
        self.persistent = True  # whether the last write of the file worked
        self._floor = int(clock())  # the start time: above any session of an earlier start
        self._damage_reason = ""
        damage = ""
        previous = self._load()
        if previous is None:  # damaged: what is left of it says nothing reliable
            damage, previous = self._set_aside(), {}
        self.session: int = max(int(previous.get("session", 0)) + 1, self._floor)
        clean = previous.get("clean") is True
        for name, entry in previous.get("seq", {}).items():
            # After a clean stop `next` is exact; after a crash only the reservation is safe.
            self._next[name] = int(entry["next"]) if clean else int(entry["reserved"])
        # After a crash the log is exact if the crashed run had one; without a file it is all we know.
        if resume is not None and (clean or previous.get("wal") is True or not previous):
            for name, last in resume.items():
                start = last + 1
                if clean:  # exact too; the larger wins should a message have failed to reach the log
                    start = max(start, self._next.get(name, 1))
                self._next[name] = start
        else:
            # No file, or one that is behind what the log shows (it could not be written): the log
            # is not the last word either, so a block past what it shows: a gap, never a repeat.
            for name, last in (seen or {}).items():
                if last >= self._next.get(name, 1):
                    self._next[name] = last + block
        self._reserved = dict(self._next)
        if damage:
            log.error(
                "%s is damaged (%s): new session %d, sequence numbers %s",
                self.path,
                damage,
                self.session,
                "continue from the spool" if self._next else "start again at 1 (no spool to continue from)",
            )
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
        data = json.dumps(self._document(clean), indent=1, sort_keys=True).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # also when a stale .tmp existed, whatever the umask
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            if self.persistent:
                log.error(
                    "cannot write %s (%s): sequence numbers continue in memory (after a crash in "
                    "this state they may repeat, under a new session); trying again at the next "
                    "block of %d",
                    self.path,
                    exc.strerror or exc,
                    self._block,
                )
            self.persistent = False
            return
        if not self.persistent:
            log.warning("%s can be written again", self.path)  # before another thread sees it back
            self.persistent = True

    def _load(self) -> dict[str, Any] | None:
        """The saved state; {} when there is none, None when it is damaged or unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._damage_reason = f"cannot read it: {exc.strerror or exc}"
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("seq", {}), dict):
                raise ValueError("not a sequence-state object")
            for entry in data.get("seq", {}).values():
                int(entry["next"]), int(entry["reserved"])
            if int(data.get("session", 0)) < 0:
                raise ValueError("negative session")
        except (ValueError, TypeError, KeyError) as exc:
            self._damage_reason = str(exc) or type(exc).__name__
            match = _LEGIBLE_SESSION.search(raw)
            if match:  # a number still legible in it may be the last session: stay above it
                self._floor = max(self._floor, int(match.group(1)) + 1)
            return None
        return data

    def _set_aside(self) -> str:
        """Keep a damaged file for a post-mortem (`mqtt-seq.json.damaged-<time>`) and raise the
        session floor above the run that last wrote it; the reason, for the one log line."""
        # It was written when its run started, or later: that run's session is below this.
        with contextlib.suppress(OSError):
            self._floor = max(self._floor, int(self.path.stat().st_mtime) + 1)
        target = self.path.with_name(f"{self.path.name}.damaged-{int(self._clock())}")
        try:
            os.replace(self.path, target)
            kept = f"kept as {target.name}"
        except OSError as exc:
            kept = f"cannot move it aside: {exc.strerror or exc}"
        return f"{self._damage_reason}; {kept}"


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
