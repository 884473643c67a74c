"""Store and forward: messages the broker has not acknowledged yet, in order, bounded.

Every message with a `seq` goes through the spool: the outbox appends it, hands it to paho from
here, and commits it when the broker acknowledges it. What the outbox needs from a spool
(`Spool`), and its two implementations: `DiskSpool` (`disk_spool.py`: an append-only segment log
that is the publisher's write-ahead log and survives `kill -9`, the why is there; its byte format
in `spool_segment.py`, recovery after a restart in `spool_recovery.py`, its writes and the card's
failures in `spool_writer.py` and `spool_fault.py`) and `MemorySpool` here, the same interface
without a disk (a library user or test that gives no spool directory): bounded by a record count,
lost on exit, so a crash loses what was not acknowledged and `seq` resumes past the sequence
store's reserved block (a gap). No method of either raises on a disk fault: a spool that cannot
write reports it (`health()`) and keeps going, because a spool exception would stop the outbox,
and with it every message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Protocol

from cuas_node.publish.disk_spool import DiskSpool
from cuas_node.publish.spool_segment import EXPIRES, QUARANTINE, Record


class Spool(Protocol):
    """What the publisher needs from a spool. Used from one thread only (the publisher's outbox)."""

    dropped_full: int
    quarantined: int
    spooled: int

    def append(self, record: Record) -> None: ...
    def has_unsent(self) -> bool: ...
    def next_unsent(self) -> tuple[Record, object] | None: ...
    def commit(self, token: object) -> None: ...
    def rewind(self) -> None: ...
    def tick(self) -> None: ...
    def close(self) -> None: ...
    def last_seqs(self) -> dict[str, int] | None: ...
    def seen_seqs(self) -> dict[str, int]: ...
    def begin(self, next_seqs: Mapping[str, int]) -> None: ...
    def health(self) -> dict[str, int | str]: ...

    @property
    def pending(self) -> int: ...

    @property
    def size_bytes(self) -> int: ...


class MemorySpool:
    """In-memory spool bounded by `max_records` (oldest dropped first); nothing survives a restart."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max(1, max_records)
        self._records: deque[tuple[int, Record]] = deque()
        self._next_id = 0
        self._unsent = 0  # index into _records of the first record not yet handed out
        self._bytes = 0
        self.dropped_full = 0
        self.quarantined = 0
        self.spooled = 0

    def append(self, record: Record) -> None:
        while len(self._records) >= self.max_records:
            _, old = self._records.popleft()
            self._bytes -= len(old.payload)
            self._unsent = max(0, self._unsent - 1)
            self.dropped_full += 1
        self._records.append((self._next_id, record))
        self._next_id += 1
        self._bytes += len(record.payload)
        self.spooled += 1

    def has_unsent(self) -> bool:
        return self._unsent < len(self._records)

    def next_unsent(self) -> tuple[Record, object] | None:
        if not self.has_unsent():
            return None
        ident, record = self._records[self._unsent]
        self._unsent += 1
        return record, ident

    def commit(self, token: object) -> None:
        assert isinstance(token, int)
        while self._records and self._records[0][0] <= token:
            _, old = self._records.popleft()
            self._bytes -= len(old.payload)
            self._unsent = max(0, self._unsent - 1)

    def rewind(self) -> None:
        self._unsent = 0

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass

    def last_seqs(self) -> dict[str, int] | None:
        return None  # nothing survives a restart: the sequence store decides alone

    def seen_seqs(self) -> dict[str, int]:
        return {}

    def begin(self, next_seqs: Mapping[str, int]) -> None:
        pass

    def health(self) -> dict[str, int | str]:
        """Always `ok`: there is no card to fail (see `DiskSpool.health`)."""
        return {"state": "ok", "skipped_records": 0, "skipped_bytes": 0}

    @property
    def pending(self) -> int:
        return len(self._records)

    @property
    def size_bytes(self) -> int:
        return self._bytes


__all__ = ["EXPIRES", "QUARANTINE", "DiskSpool", "MemorySpool", "Record", "Spool"]
