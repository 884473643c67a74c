"""What every output shares: the bounded hand-off from the fusion thread, and its health entry.

The fusion thread must never wait for an output, so it hands items over with an append that
never blocks; when the output's thread falls behind (a slow or dead peer), the oldest item goes,
because a newer track report supersedes it. Every item lost (dropped from a full queue, lost in
flight with a connection, still queued at stop) is counted in one place, under one lock.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A bounded FIFO: `put` from any thread never blocks; a full queue drops its oldest item."""

    def __init__(self, size: int) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._size = size
        self._lock = threading.Lock()
        self._dropped = 0

    def put(self, item: T) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.popleft()
                self._dropped += 1
            self._items.append(item)

    def take(self) -> T | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def lost(self, count: int = 1) -> None:
        """Items taken but never delivered (in flight when a connection broke, or met a bug)."""
        with self._lock:
            self._dropped += count

    def drop_all(self) -> None:
        with self._lock:
            self._dropped += len(self._items)
            self._items.clear()

    @property
    def dropped(self) -> int:
        return self._dropped

    def __len__(self) -> int:
        return len(self._items)


def health_entry(
    *,
    name: str,
    kind: str,
    target: str,
    state: str,
    connected_since: float | None,
    sent: int,
    queue: DropOldestQueue[Any],
    last_error: str | None,
) -> dict[str, Any]:
    """An output's entry in `health.outputs` (docs/mqtt.md, docs/schemas/health.schema.json)."""
    return {
        "name": name,
        "kind": kind,
        "target": target,
        "state": state,
        "connected_since": round(connected_since, 3) if connected_since is not None else None,
        "sent": sent,
        "dropped": queue.dropped,
        "queued": len(queue),
        "last_error": last_error,
    }
