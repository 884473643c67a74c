"""Driver supervision, written once: keep a sensor driver open and reading, whatever it raises.

The runtime (one thread per sensor feeding the fusion queue), `calibrate capture` and
`cuas-node doctor` all run their drivers through `DriverSupervisor`, so a sensor means the same
thing to each of them. The rules:

- Any `Exception` from a driver's `open`, `read` or `close` is caught. An `OSError` (pyserial's
  `SerialException`, `port_errors.PortError`, the radar's `CliError`) is an I/O fault whose message
  already says what to do: one ERROR line, no traceback. Anything else is a bug in a driver or a
  parser ("internal error"): one ERROR line with the traceback. Either way the error is counted
  (`open`, `read` for I/O, `internal` for the rest), the sensor is `down` with the error as its
  detail, the port is closed and reopened with exponential back-off.
- An outage is announced once, however many retries fail. A reopen alone does not end it (the
  sensor stays `down`, so a driver that fails on every read never flickers to `ok`): the first
  measurement after the reopen puts the sensor back to `ok` (detail cleared), and `settle_s` of
  reads without a fault end the outage, with one INFO line saying the sensor is back and the
  back-off reset. A driver that fails again a few reads after each reopen (a parser that chokes
  on one sentence type) thus stays in one outage, logged once, backing off up to the cap.
- Back-off waits stamp the heartbeat (waiting to reopen is progress, not a stall: the systemd
  watchdog must not restart the node because a sensor is unplugged).
- `KeyboardInterrupt` and `SystemExit` are not swallowed: the driver is closed, marked `down`,
  and the exception propagates.

Stdlib, the kernel and the driver interface only: the supervisor knows nothing of the node.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cuas_node.drivers.driver import SensorDriver
from cuas_node.kernel.measurement import AnyMeasurement, SensorState

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
SETTLE_S = 2.0
"""Reads without a fault after a reopen that end an outage."""
BEAT_INTERVAL_S = 1.0
"""The heartbeat is stamped at least this often while a back-off is waited out."""

Deliver = Callable[[AnyMeasurement], None]
Done = Callable[[SensorDriver], bool]


@dataclass
class SupervisorStats:
    """What one supervisor has seen. Written by its own thread, read by anyone (plain ints)."""

    heartbeat: float = 0.0
    """`time.monotonic()` of the loop's last sign of life (the systemd watchdog reads it)."""
    delivered: int = 0
    taken: int = 0
    """Measurements the consumer took off the queue (written by the consumer's thread only)."""
    dropped: int = 0
    """Measurements lost because the queue given to the supervisor was full, or this sensor's
    share of it was (`share`)."""
    errors: dict[str, int] = field(default_factory=dict)
    """`open`, `read`: I/O errors by phase; `internal`: any other exception from `open`, `read` or
    `close` (an I/O error while closing a port that went away is expected and not counted)."""
    outages: int = 0
    last_error: str = ""

    @property
    def internal_errors(self) -> int:
        return self.errors.get("internal", 0)


class DriverSupervisor:
    """Runs one driver: opens it, reads it, delivers its measurements, and survives its faults.

    `out` is a bounded `queue.Queue` (put without blocking; a full queue counts `stats.dropped`) or
    any callable taking one measurement. `stop` ends the loop (several supervisors may share one);
    `done`, called in the supervisor's thread after every successful read, ends it too when it
    returns True (doctor: the sensor has proven itself). Run it with `start()` in its own thread
    (`thread`), or call `run()` directly. The back-off bounds and `settle_s` are injectable so
    that fault tests unplug and replug in milliseconds.
    """

    def __init__(
        self,
        driver: SensorDriver,
        out: queue.Queue[AnyMeasurement] | Deliver,
        stop: threading.Event | None = None,
        *,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        settle_s: float = SETTLE_S,
        done: Done | None = None,
        share: int | None = None,
    ) -> None:
        self.driver = driver
        # At most `share` of this sensor's measurements wait in a shared queue at once, so one
        # flooding sensor (a thousand spoofed Remote ID broadcasters) cannot fill the queue and
        # starve the others; the consumer counts what it takes in `stats.taken`.
        self.share = share
        self.stop = stop if stop is not None else threading.Event()
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.settle_s = settle_s
        self.beat_interval_s = BEAT_INTERVAL_S
        self.done = done
        self.stats = SupervisorStats(heartbeat=time.monotonic())
        self.thread = threading.Thread(target=self.run, name=f"driver-{driver.sensor_id}", daemon=True)
        self._queue: queue.Queue[AnyMeasurement] | None = out if isinstance(out, queue.Queue) else None
        self._sink: Deliver | None = None if isinstance(out, queue.Queue) else out
        self._is_open = False
        self._backoff = backoff_min_s
        self._outage: set[str] | None = None  # fault kinds announced in the current outage
        self._outage_since = 0.0
        self._outage_errors = 0
        self._reopened_at = 0.0

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def request_stop(self) -> None:
        self.stop.set()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    @property
    def in_outage(self) -> bool:
        return self._outage is not None

    def run(self) -> None:
        """Supervise until `stop` is set or `done` says so; the driver is closed on the way out."""
        ended_by: BaseException | None = None
        self._backoff = self.backoff_min_s
        try:
            self._loop()
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: never swallowed
            ended_by = exc
            raise
        finally:
            if self._is_open:
                self._close()
            if ended_by is not None:
                self.driver.state = SensorState.DOWN
                self.driver.detail = f"supervision ended by {type(ended_by).__name__}"

    def _loop(self) -> None:
        drv = self.driver
        while not self.stop.is_set():
            self.stats.heartbeat = time.monotonic()
            if not self._is_open:
                try:
                    drv.open()
                except Exception as exc:
                    self._fault("open", exc)
                    self._back_off()
                    continue
                self._is_open = True
                if self._outage is None:
                    log.info("sensor %s (%s) opened", drv.sensor_id, drv.kind)
                else:  # still down: a port that opens is no proof the fault has stopped
                    log.debug("sensor %s reopened", drv.sensor_id)
                    self._reopened_at = time.monotonic()
                    self._mark_down(self.stats.last_error)
            try:
                measurements = drv.read()
                if self._outage is not None:
                    self._settle(bool(measurements))
                for m in measurements:
                    self._deliver(m)
                if self.done is not None and self.done(drv):
                    return
            except Exception as exc:
                self._fault("read", exc)
                self._close()
                self._back_off()

    # -- faults ----------------------------------------------------------------------------------

    def _fault(self, phase: str, exc: Exception) -> None:
        """Count, announce once per outage (per kind: I/O, internal), mark the sensor down."""
        internal = not isinstance(exc, OSError)
        key = "internal" if internal else phase
        self.stats.errors[key] = self.stats.errors.get(key, 0) + 1
        detail = f"internal error in {phase}: {type(exc).__name__}: {exc}" if internal else f"{phase}: {exc}"
        self.stats.last_error = detail
        if self._outage is None:
            self._outage = set()
            self._outage_since = time.monotonic()
            self._outage_errors = 0
            self.stats.outages += 1
        self._outage_errors += 1
        kind = "internal" if internal else "io"
        if kind not in self._outage:
            self._outage.add(kind)
            log.error(
                "sensor %s unavailable (%s); retrying with back-off",
                self.driver.sensor_id,
                detail,
                exc_info=exc if internal else None,
            )
        self._mark_down(detail)

    def _mark_down(self, detail: str) -> None:
        self.driver.state = SensorState.DOWN
        self.driver.detail = detail

    def _close(self) -> None:
        self._is_open = False
        try:
            self.driver.close()
        except OSError as exc:  # closing a port that went away
            log.debug("sensor %s: close failed: %s", self.driver.sensor_id, exc)
        except Exception as exc:
            self._fault("close", exc)
        if self._outage is not None:  # close() says "closed"; the reason is the fault
            self._mark_down(self.stats.last_error)

    def _settle(self, measured: bool) -> None:
        """A good read during an outage: a measurement puts the sensor back up at once; reads
        without a fault for `settle_s` since the reopen end the outage."""
        settled = time.monotonic() - self._reopened_at >= self.settle_s
        if measured or settled:
            self._mark_up()
        if settled:
            self._recovered()

    def _mark_up(self) -> None:
        """Undo our own `down` (not a state the driver set itself since, e.g. the baud-rate hint)."""
        drv = self.driver
        if drv.state == SensorState.DOWN and drv.detail == self.stats.last_error:
            drv.state = SensorState.OK
            drv.detail = ""

    def _recovered(self) -> None:
        drv = self.driver
        log.info(
            "sensor %s (%s) is back after %d error(s) in %.1f s",
            drv.sensor_id,
            drv.kind,
            self._outage_errors,
            time.monotonic() - self._outage_since,
        )
        self._outage = None
        self._backoff = self.backoff_min_s

    def _back_off(self) -> None:
        """Wait out the back-off in short slices, stamping the heartbeat, then double it."""
        deadline = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max_s)
        while not self.stop.is_set():
            self.stats.heartbeat = now = time.monotonic()
            if now >= deadline:
                return
            self.stop.wait(min(self.beat_interval_s, deadline - now))

    def _deliver(self, m: AnyMeasurement) -> None:
        if self._queue is not None:
            if self.share is not None and self.stats.delivered - self.stats.taken >= self.share:
                self.stats.dropped += 1
                return
            try:
                self._queue.put_nowait(m)
            except queue.Full:
                self.stats.dropped += 1
                return
        elif self._sink is not None:
            self._sink(m)
        self.stats.delivered += 1


def run_until_done(supervisors: Sequence[DriverSupervisor], timeout_s: float) -> bool:
    """Run every supervisor in its own thread until each has finished by itself (its `done` said
    so) or `timeout_s` has passed, then stop and join them all. True when all finished in time."""
    for s in supervisors:
        s.start()
    deadline = time.monotonic() + timeout_s
    for s in supervisors:
        s.join(max(0.0, deadline - time.monotonic()))
    finished = not any(s.thread.is_alive() for s in supervisors)
    for s in supervisors:
        s.request_stop()
    for s in supervisors:
        s.join(2.0)
    return finished


def internal_error_total(supervisors: Iterable[DriverSupervisor]) -> int:
    """Internal (non-I/O) errors of all supervisors: health's `errors.internal`."""
    return sum(s.stats.internal_errors for s in supervisors)
