"""The state of the link to the broker that the publisher, its outbox and its connector share.

One object, so the three threads involved (producers calling the publisher, the outbox, the
connector) agree on one `broker_state` and one set of counters. Everything in it is guarded by
`lock`, which is never held over a paho call (paho calls `on_publish` with its own lock held, so a
lock shared with producers would deadlock); `fault` and `fault_logged` are the exception: plain
attributes written by the connector and the outbox, read by the connector between attempts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0


def _zero_counts() -> dict[str, int]:
    return {"published": 0, "unencodable": 0, "reconnects": 0, "dropped_stale": 0, "refused": 0}


def _zero_spool_stats() -> dict[str, int]:
    return {"spooled": 0, "pending": 0, "spool_bytes": 0, "dropped_full": 0, "quarantined": 0}


@dataclass
class Backoff:
    """How long the connector waits between attempts: doubling from `min_s` up to `max_s`."""

    min_s: float = RECONNECT_MIN_S
    max_s: float = RECONNECT_MAX_S


@dataclass
class LinkState:
    """Connection state and counters, shared by the publisher's threads (see the module docstring)."""

    # Re-entrant because a health message is built (reading the counters) while its `seq` is
    # being assigned under the same lock.
    lock: threading.RLock = field(default_factory=threading.RLock)
    connected: bool = False
    ever_connected: bool = False
    broker_state: str = "disconnected"
    stopped: bool = False
    started: bool = False
    counts: dict[str, int] = field(default_factory=_zero_counts)
    spool_stats: dict[str, int] = field(default_factory=_zero_spool_stats)
    # Why the current connection attempt ended ("downgrade", a broker state), and the last fault
    # message logged (a repeat goes to DEBUG): not under `lock`.
    fault: str | None = None
    fault_logged: str | None = None

    def counters(self) -> dict[str, int]:
        """`published` (acknowledged by the broker), `dropped` (never delivered: unencodable, stale,
        spool full), `reconnects`."""
        with self.lock:
            c = self.counts
            dropped = c["unencodable"] + c["dropped_stale"] + self.spool_stats["dropped_full"]
            return {"published": c["published"], "dropped": dropped, "reconnects": c["reconnects"]}

    def spool_counters(self) -> dict[str, int]:
        """`spooled` (written to the spool since start), `pending` (waiting now), `spool_bytes`,
        `dropped_stale`, `dropped_full` and `quarantined` (damaged spool files moved aside)."""
        with self.lock:
            out = dict(self.spool_stats)
            out["dropped_stale"] = self.counts["dropped_stale"]
            return out
