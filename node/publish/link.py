"""The state of the link to the broker that the publisher, its outbox and its connector share.

One object, so the three threads involved (producers calling the publisher, the outbox, the
connector) agree on one `broker_state` and one set of counters. Everything in it is guarded by
`lock`, which is never held over a paho call (paho calls `on_publish` with its own lock held, so a
lock shared with producers would deadlock); `fault` and `fault_logged` are the exception: plain
attributes written by the connector and the outbox, read by the connector between attempts.

`Supervisor` keeps the publisher's long-lived threads (outbox, connector) alive: before it, one
exception in the outbox silenced the node for good while the process, its retained `online` and
its watchdog pings lived on (issue 14).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# The publisher's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.mqtt")

RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
RESTART_MIN_S = 0.1  # a supervised loop restarts after this, doubling per restart ...
RESTART_MAX_S = 5.0  # ... up to this
RESTART_LIMIT = 5  # more restarts than this within RESTART_WINDOW_S: the publisher has failed
RESTART_WINDOW_S = 60.0


def _zero_counts() -> dict[str, int]:
    return {
        "published": 0,
        "unencodable": 0,
        "reconnects": 0,
        "dropped_stale": 0,
        "refused": 0,
        "thread_restarts": 0,
        "internal_errors": 0,
    }


def _zero_spool_stats() -> dict[str, int | str]:
    return {
        "spooled": 0, "pending": 0, "spool_bytes": 0, "dropped_full": 0, "quarantined": 0,
        "state": "ok", "skipped_records": 0, "skipped_bytes": 0,
    }  # fmt: skip


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
    spool_stats: dict[str, int | str] = field(default_factory=_zero_spool_stats)
    # Why the current connection attempt ended ("downgrade", a broker state), and the last fault
    # message logged (a repeat goes to DEBUG): not under `lock`.
    fault: str | None = None
    fault_logged: str | None = None
    # Why the publisher cannot publish any more (a supervised thread kept failing), else None.
    failed: str | None = None

    def counters(self) -> dict[str, int]:
        """`published` (acknowledged by the broker), `dropped` (never delivered: unencodable, stale,
        spool full), `reconnects`, `thread_restarts` (a publisher thread restarted after an
        unexpected exception) and `internal_errors` (one event's handling raised; the rest went on)."""
        with self.lock:
            c = self.counts
            dropped = c["unencodable"] + c["dropped_stale"] + int(self.spool_stats["dropped_full"])
            return {
                "published": c["published"],
                "dropped": dropped,
                "reconnects": c["reconnects"],
                "thread_restarts": c["thread_restarts"],
                "internal_errors": c["internal_errors"],
            }

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1

    def spool_counters(self) -> dict[str, int | str]:
        """`spooled` (written to the spool since start), `pending` (waiting now), `spool_bytes`,
        `dropped_stale`, `dropped_full` and `quarantined` (damaged spool files moved aside)."""
        with self.lock:
            out = dict(self.spool_stats)
            out["dropped_stale"] = self.counts["dropped_stale"]
            return out


class Supervisor:
    """Runs a thread's loop, and again after an unexpected exception, with back-off.

    Each exception is logged with its traceback the first time it is seen (a repeat gets one
    line), counted (`thread_restarts`), and the loop restarts after `RESTART_MIN_S`, doubling up to
    `RESTART_MAX_S` (reset once the loop has run a whole window without failing). A loop that
    fails more than `RESTART_LIMIT` times within `RESTART_WINDOW_S` is broken, not unlucky:
    `link.failed` says why and `on_failed` runs, so the runtime can exit non-zero and systemd
    restart the process, rather than the node living on silently."""

    def __init__(
        self,
        name: str,
        link: LinkState,
        wait: Callable[[float], object] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._link = link
        self._wait = wait  # sleeps between restarts (the connector's is interrupted by stop)
        self._monotonic = monotonic
        # Read at construction, so tests can shorten them on this module.
        self._min_s, self._max_s = RESTART_MIN_S, RESTART_MAX_S
        self._limit, self._window_s = RESTART_LIMIT, RESTART_WINDOW_S

    def run(
        self,
        loop: Callable[[], None],
        reset: Callable[[], None],
        on_failed: Callable[[str], None],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """Call `loop` until it returns; after an exception call `reset` (itself supervised) and
        `loop` again; give up as described above, or when `stopping()` says the thread should end."""
        restarts: deque[float] = deque()
        seen: set[tuple[str, str]] = set()
        delay = self._min_s
        while True:
            try:
                if restarts:
                    reset()
                loop()
                return
            except Exception as exc:
                now = self._monotonic()
                while restarts and now - restarts[0] > self._window_s:
                    restarts.popleft()
                if not restarts:
                    delay = self._min_s
                restarts.append(now)
                signature = (type(exc).__name__, str(exc)[:200])
                if signature in seen:
                    log.error("MQTT: %s thread failed again: %s: %s", self.name, *signature)
                else:
                    seen.add(signature)
                    log.exception("MQTT: %s thread failed (%s: %s)", self.name, *signature)
                if len(restarts) > self._limit:
                    reason = f"{self.name}: {signature[0]}: {signature[1]}"
                    self._give_up(reason, on_failed)
                    return
                if stopping():
                    return
                self._link.count("thread_restarts")
                log.warning("MQTT: restarting the %s thread in %.1f s", self.name, delay)
                self._wait(delay)
                delay = min(delay * 2, self._max_s)

    def _give_up(self, reason: str, on_failed: Callable[[str], None]) -> None:
        link = self._link
        with link.lock:
            first = link.failed is None
            if first:
                link.failed = reason
            link.connected = False
        log.critical(
            "MQTT: the %s thread failed more than %d times within %.0f s; the publisher has stopped "
            "(the runtime exits so that systemd restarts the node): %s",
            self.name,
            self._limit,
            self._window_s,
            reason,
        )
        if first:
            try:
                on_failed(reason)
            except Exception:
                log.exception("MQTT: cleaning up after the %s thread failed", self.name)


class EventGuard:
    """Contains one event's exception so that a thread handling many goes on with the next: the
    exception is logged with its traceback the first time (per kind of event and type of
    exception), then at DEBUG, and counted in `mqtt.internal_errors`. Thread-confined."""

    def __init__(self, link: LinkState) -> None:
        self._link = link
        self._logged: set[tuple[str, str]] = set()

    @contextlib.contextmanager
    def __call__(self, kind: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self._link.count("internal_errors")
            signature = (kind, type(exc).__name__)
            if signature in self._logged:
                log.debug("MQTT: handling a %s event failed again: %r", kind, exc)
            else:
                self._logged.add(signature)
                log.exception("MQTT: handling a %s event failed (the others go on)", kind)
