"""Driver supervision (`cuas_node.drivers.supervisor`): a driver bug costs one sensor a back-off,
never the node; the sensor is `down` with the error's text while it lasts, the error is counted and
logged once with its traceback, and the sensor comes back by itself when the fault stops.

Unit tests run the supervisor on fake drivers; `test_runtime_*` runs the same fault through the
real `Runtime` with an in-process sink and reads the health message it publishes. Every wait is on
a condition (tests.fakes.wait_until), never a sleep standing in for an assertion.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cuas_node.drivers.driver import SensorHealth
from cuas_node.drivers.port_errors import PortDisconnected
from cuas_node.drivers.supervisor import DriverSupervisor, internal_error_total, run_until_done
from cuas_node.kernel.measurement import AnyMeasurement, GpsFix, SensorState
from tests.fakes import wait_until
from tests.sinks import RecordingSink

LOG = "cuas_node.drivers.supervisor"
FAULT_TEXT = "bad lookup table entry 7"


class FlakyDriver:
    """A sensor driver whose `read` raises `fault()` from read number `fail_from` on, for as long as
    `faulty` is set; every good read yields one measurement."""

    kind = "nmea"

    def __init__(
        self,
        sensor_id: str = "dut",
        fail_from: int = 3,
        fault: Callable[[], BaseException] = lambda: ValueError(FAULT_TEXT),
        period_s: float = 0.002,
    ) -> None:
        self.sensor_id = sensor_id
        self.period_s = period_s
        self.state = SensorState.DOWN
        self.detail = "not opened"
        self.fail_from = fail_from
        self.fault = fault
        self.faulty = threading.Event()
        self.faulty.set()
        self.reads = 0
        self.opens = 0
        self.closes = 0
        self.measurements = 0
        self.last_seen: float | None = None

    def open(self) -> None:
        self.opens += 1
        self.state = SensorState.OK
        self.detail = ""

    def read(self) -> list[AnyMeasurement]:
        self.reads += 1
        time.sleep(self.period_s)
        if self.reads >= self.fail_from and self.faulty.is_set():
            raise self.fault()
        now = time.time()
        self.measurements += 1
        self.last_seen = now
        return [GpsFix(self.sensor_id, now, time.monotonic(), 52.0, 4.0, 10.0, None, 1)]

    def close(self) -> None:
        self.closes += 1
        self.state = SensorState.DOWN
        self.detail = "closed"

    def health(self) -> SensorHealth:
        return SensorHealth(
            self.sensor_id, self.kind, self.state, self.measurements, self.last_seen, {}, self.detail
        )


class OpenFails(FlakyDriver):
    """`open` raises `fault()` the first `failures` times; `attempts` has the time of every try."""

    def __init__(self, failures: int, fault: Callable[[], BaseException]) -> None:
        super().__init__(fail_from=10**9)
        self.failures = failures
        self.open_fault = fault
        self.attempts: list[float] = []

    def open(self) -> None:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.failures:
            raise self.open_fault()
        super().open()


def fast(driver: Any, out: Any = None, **kwargs: Any) -> DriverSupervisor:
    out = out if out is not None else queue.Queue()
    return DriverSupervisor(driver, out, backoff_min_s=0.01, backoff_max_s=0.05, settle_s=0.05, **kwargs)


@pytest.fixture
def running() -> Iterator[list[DriverSupervisor]]:
    """Supervisors a test starts; stopped and joined afterwards whatever happens."""
    started: list[DriverSupervisor] = []
    yield started
    for s in started:
        s.request_stop()
    for s in started:
        s.join(2.0)


def records(caplog: pytest.LogCaptureFixture, sensor_id: str, needle: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == LOG and f"sensor {sensor_id} " in r.getMessage() and needle in r.getMessage()
    ]


# --- unit level -------------------------------------------------------------------------------------


def test_value_error_on_third_read_marks_down_once_and_recovers(
    running: list[DriverSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    driver = FlakyDriver()
    out: queue.Queue[AnyMeasurement] = queue.Queue()
    sup = fast(driver, out)
    running.append(sup)
    sup.start()

    # The fault persists for several reopen cycles: one outage, one log line, every error counted.
    wait_until(lambda: sup.stats.internal_errors >= 3, what="several internal errors")
    assert sup.thread.is_alive()
    assert driver.state == SensorState.DOWN
    assert f"ValueError: {FAULT_TEXT}" in driver.detail and driver.detail.startswith("internal error")
    assert driver.opens >= 3 and driver.closes >= 2  # closed and reopened
    assert sup.stats.errors.get("read", 0) == 0 and sup.stats.outages == 1
    assert out.qsize() == 2  # the two good reads before the fault
    announced = records(caplog, "dut", "unavailable")
    assert len(announced) == 1
    assert announced[0].levelno == logging.ERROR and announced[0].exc_info is not None
    assert FAULT_TEXT in announced[0].getMessage()
    assert "ValueError" in caplog.text and "Traceback" in caplog.text

    driver.faulty.clear()
    wait_until(lambda: driver.state == SensorState.OK and out.qsize() > 2, what="recovery")
    assert driver.detail == ""
    assert sup.thread.is_alive()
    wait_until(lambda: bool(records(caplog, "dut", "is back")), what="the outage to end")
    back = records(caplog, "dut", "is back")
    assert len(back) == 1 and back[0].levelno == logging.INFO
    assert len(records(caplog, "dut", "unavailable")) == 1
    assert internal_error_total([sup]) == sup.stats.internal_errors >= 3

    sup.request_stop()
    sup.join(2.0)
    assert not sup.thread.is_alive()
    assert driver.state == SensorState.DOWN and driver.closes == driver.opens  # closed on the way out


def test_serial_error_is_one_clear_line_without_traceback(
    running: list[DriverSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    driver = FlakyDriver(
        fault=lambda: PortDisconnected("lost serial port /dev/cuas-x while reading", port="/dev/cuas-x")
    )
    sup = fast(driver)
    running.append(sup)
    sup.start()
    wait_until(lambda: sup.stats.errors.get("read", 0) >= 3, what="read errors")
    assert sup.stats.internal_errors == 0
    assert driver.state == SensorState.DOWN and driver.detail.startswith("read: lost serial port")
    (line,) = records(caplog, "dut", "unavailable")
    assert line.exc_info is None and "Traceback" not in caplog.text
    driver.faulty.clear()
    wait_until(lambda: driver.state == SensorState.OK, what="recovery")
    wait_until(lambda: bool(records(caplog, "dut", "is back")), what="the outage to end")
    assert len(records(caplog, "dut", "is back")) == 1 and not sup.in_outage


@pytest.mark.parametrize(
    ("fault", "key"),
    [(lambda: RuntimeError("firmware table missing"), "internal"), (lambda: OSError(5, "EIO"), "open")],
    ids=["internal", "os-error"],
)
def test_open_errors_are_counted_and_retried(
    fault: Callable[[], BaseException], key: str, running: list[DriverSupervisor]
) -> None:
    driver = OpenFails(3, fault)
    sup = fast(driver)
    running.append(sup)
    sup.start()
    wait_until(lambda: driver.state == SensorState.OK and driver.measurements > 0, what="open at last")
    assert sup.stats.errors == {key: 3}
    assert driver.detail == ""


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_are_not_swallowed(exc_type: type[BaseException]) -> None:
    driver = FlakyDriver(fail_from=2, fault=exc_type)
    sup = fast(driver)
    with pytest.raises(exc_type):
        sup.run()  # in this thread: the exception reaches the caller
    assert driver.closes == 1
    assert driver.state == SensorState.DOWN and exc_type.__name__ in driver.detail
    assert sup.stats.errors == {}


def test_back_off_stamps_the_heartbeat(running: list[DriverSupervisor]) -> None:
    """A long back-off is waited out in slices, each stamping the heartbeat the watchdog reads."""
    driver = OpenFails(10**9, lambda: OSError(2, "No such file or directory"))
    sup = DriverSupervisor(driver, queue.Queue(), backoff_min_s=30.0, backoff_max_s=30.0)
    sup.beat_interval_s = 0.02
    running.append(sup)
    sup.start()
    wait_until(lambda: sup.stats.errors.get("open", 0) == 1, what="the first failed open")
    beats = {sup.stats.heartbeat}

    def beating() -> bool:
        beats.add(sup.stats.heartbeat)
        return len(beats) >= 5

    wait_until(beating, what="heartbeats while waiting")
    assert len(driver.attempts) == 1  # still in the first 30 s back-off
    started = time.monotonic()
    sup.request_stop()
    sup.join(2.0)
    assert not sup.thread.is_alive() and time.monotonic() - started < 1.0  # a stop ends the wait


def test_back_off_doubles_up_to_its_cap(running: list[DriverSupervisor]) -> None:
    driver = OpenFails(6, lambda: OSError(2, "No such file or directory"))
    sup = DriverSupervisor(driver, queue.Queue(), backoff_min_s=0.02, backoff_max_s=0.08)
    running.append(sup)
    sup.start()
    wait_until(lambda: driver.measurements > 0, what="open at last")
    gaps = [b - a for a, b in zip(driver.attempts, driver.attempts[1:], strict=False)]
    assert len(gaps) == 6
    for gap, wanted in zip(gaps, [0.02, 0.04, 0.08, 0.08, 0.08, 0.08], strict=True):
        assert gap >= wanted * 0.9, gaps


def test_full_queue_counts_drops_and_a_callable_receives_everything(running: list[DriverSupervisor]) -> None:
    small: queue.Queue[AnyMeasurement] = queue.Queue(maxsize=1)
    dropping = fast(FlakyDriver("q", fail_from=10**9), small)
    got: list[AnyMeasurement] = []
    collecting = fast(FlakyDriver("c", fail_from=10**9), got.append)
    running += [dropping, collecting]
    dropping.start()
    collecting.start()
    wait_until(lambda: dropping.stats.dropped >= 3 and len(got) >= 3, what="drops and deliveries")
    assert dropping.stats.delivered == 1 and collecting.stats.dropped == 0
    assert collecting.stats.delivered >= len(got) - 1


def test_a_flooding_sensor_fills_only_its_share_of_the_queue(running: list[DriverSupervisor]) -> None:
    """A sensor that floods (a thousand spoofed Remote ID broadcasters) while fusion lags fills
    its own share of the shared queue and no more: the quiet sensor's measurements still get in."""
    shared: queue.Queue[AnyMeasurement] = queue.Queue(maxsize=100)
    flood = fast(FlakyDriver("flood", fail_from=10**9, period_s=0.0), shared, share=50)
    quiet = fast(FlakyDriver("quiet", fail_from=10**9, period_s=0.01), shared, share=50)
    running += [flood, quiet]
    flood.start()
    wait_until(lambda: flood.stats.dropped >= 1000, what="the flood overflows its share")
    quiet.start()
    wait_until(lambda: quiet.stats.delivered >= 20, what="the quiet sensor delivers")
    assert flood.stats.delivered == 50 and quiet.stats.dropped == 0
    taken = [shared.get_nowait() for _ in range(shared.qsize())]
    flood.stats.taken += sum(1 for m in taken if m.sensor_id == "flood")  # the consumer's count
    wait_until(lambda: flood.stats.delivered > 50, what="room again once fusion took its share")


def test_run_until_done_stops_early_when_every_sensor_has_proven_itself() -> None:
    drivers = [FlakyDriver(f"s{i}", fail_from=10**9) for i in range(3)]
    sups = [fast(d, lambda m: None, done=lambda d: d.health().measurements >= 2) for d in drivers]
    started = time.monotonic()
    assert run_until_done(sups, timeout_s=10.0)
    assert time.monotonic() - started < 5.0
    assert all(d.measurements == 2 and d.closes == 1 for d in drivers)
    # One that never proves itself runs to the deadline, and is stopped and closed there.
    never = FlakyDriver("never", fail_from=1)
    proven = FlakyDriver("proven", fail_from=10**9)
    sups = [fast(never, lambda m: None), fast(proven, lambda m: None, done=lambda d: True)]
    started = time.monotonic()
    assert not run_until_done(sups, timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 3.0
    assert proven.reads == 1 and never.closes == never.opens
    assert not any(s.thread.is_alive() for s in sups)


# --- through the real Runtime -----------------------------------------------------------------------


def _sensor(payload: dict[str, Any], sensor_id: str) -> dict[str, Any]:
    return next(s for s in payload["sensors"] if s["id"] == sensor_id)


def test_runtime_keeps_running_reports_the_fault_in_health_and_recovers(
    tmp_path: Path, schemas: dict[str, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    from cuas_node.config import build_config
    from cuas_node.kernel.clock import SystemClock
    from cuas_node.runtime import Runtime

    caplog.set_level(logging.INFO, logger=LOG)
    config = build_config(
        {
            "node": {
                "id": "sup-test",
                "state_dir": str(tmp_path),
                "position": {"lat": 52, "lon": 4, "alt_m": 0},
            },
            "mqtt": {"health_interval_s": 0.05},
        },
        "test",
    )
    flaky = FlakyDriver("flaky", period_s=0.01)
    steady = FlakyDriver("steady", fail_from=10**9, period_s=0.01)
    sink = RecordingSink()
    runtime = Runtime(config, SystemClock(), [flaky, steady], sink, session=1)
    for loop in runtime.loops:  # fault tests unplug and replug in milliseconds
        loop.backoff_min_s, loop.backoff_max_s, loop.settle_s = 0.01, 0.05, 0.05
    until = threading.Event()
    thread = threading.Thread(target=runtime.run, kwargs={"until": until}, daemon=True)
    thread.start()
    try:

        def down_in_health() -> bool:
            last = sink.health[-1] if sink.health else None
            return last is not None and _sensor(last, "flaky")["state"] == "down"

        wait_until(down_in_health, what="the sensor down in a health message")
        during = sink.health[-1]
        entry = _sensor(during, "flaky")
        assert "internal error" in entry["detail"] and f"ValueError: {FAULT_TEXT}" in entry["detail"]
        assert entry["counters"]["internal_errors"] >= 1
        assert during["errors"]["internal"] >= 1
        assert _sensor(during, "steady")["state"] == "ok"
        steady_before = steady.measurements
        wait_until(lambda: steady.measurements > steady_before + 5, what="the other sensor keeps reading")
        assert thread.is_alive() and all(loop.thread.is_alive() for loop in runtime.loops)
        n_errors = runtime.loops[0].stats.internal_errors

        flaky.faulty.clear()

        def ok_in_health() -> bool:
            entry = _sensor(sink.health[-1], "flaky")
            return entry["state"] == "ok" and flaky.measurements > 2

        wait_until(ok_in_health, what="the sensor ok again in a health message")
        after = sink.health[-1]
        assert _sensor(after, "flaky")["detail"] == ""
        assert after["errors"]["internal"] >= n_errors >= 1  # a count since start, not a state
        assert thread.is_alive()
        wait_until(lambda: bool(records(caplog, "flaky", "is back")), what="the outage to end")
    finally:
        until.set()
        thread.join(5.0)
    assert not thread.is_alive()
    assert len(records(caplog, "flaky", "unavailable")) == 1
    assert len(records(caplog, "flaky", "is back")) == 1
    for payload in (during, after):
        jsonschema.validate({"type": "health", "node_id": "sup-test", "seq": 1, **payload}, schemas["health"])


def test_runtime_stops_and_reports_failure_when_the_publisher_cannot_recover(tmp_path: Path) -> None:
    """A publisher whose supervised threads kept failing says so (`failed`): the runtime stops
    (still stopping its sinks cleanly) and `run` reports a failure, so the node exits non-zero and
    systemd restarts it rather than running on silently."""
    from cuas_node.config import build_config
    from cuas_node.kernel.clock import SystemClock
    from cuas_node.runtime import Runtime

    class FailingSink(RecordingSink):
        failed: str | None = None

    config = build_config(
        {
            "node": {
                "id": "fail-test",
                "state_dir": str(tmp_path),
                "position": {"lat": 52, "lon": 4, "alt_m": 0},
            }
        },
        "test",
    )
    sink = FailingSink()
    runtime = Runtime(config, SystemClock(), [FlakyDriver("steady", fail_from=10**9)], sink, session=1)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    wait_until(lambda: runtime.ready.is_set(), what="the runtime to start")
    assert runtime.failure is None
    sink.failed = "mqtt-outbox failed 6 times in 60 s"
    thread.join(5.0)
    assert not thread.is_alive()
    assert runtime.failure == "mqtt-outbox failed 6 times in 60 s"
    assert sink.stopped
