"""GPIO logic on a fake board with a fake clock: LED patterns, alert minimum on-time, tamper
debounce, and the runtime publishing health at once on a tamper."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cuas_node.config import ConfigError, GpioSection, build_config
from cuas_node.drivers.driver import SensorHealth
from cuas_node.gpio import (
    AlertOutput,
    FakeBoard,
    GpioController,
    NodeStatus,
    StatusLed,
    TamperInput,
    build_gpio,
    pattern_level,
    status_for,
)
from cuas_node.kernel.measurement import AnyMeasurement, SensorState
from tests.sinks import RecordingSink


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_patterns_are_distinct() -> None:
    samples = [i * 0.05 + 0.025 for i in range(40)]  # two seconds, sampled mid-step
    seen = {s: tuple(pattern_level(s, t) for t in samples) for s in NodeStatus}
    assert len(set(seen.values())) == len(NodeStatus)
    assert all(seen[NodeStatus.RUNNING])
    assert not any(seen[NodeStatus.STOPPED])
    assert sum(seen[NodeStatus.STARTING]) == 20  # 5 Hz, 50 % duty
    assert sum(seen[NodeStatus.DEGRADED]) == 20  # 1 Hz, 50 % duty
    assert sum(seen[NodeStatus.BROKER_DOWN]) == 6  # two 0.15 s flashes per 2 s


def test_status_priorities() -> None:
    assert status_for(False, True, ["ok"]) == NodeStatus.STARTING
    assert status_for(True, False, ["down"]) == NodeStatus.BROKER_DOWN
    assert status_for(True, True, ["ok", "degraded"]) == NodeStatus.DEGRADED
    assert status_for(True, True, ["ok", "ok"]) == NodeStatus.RUNNING


def test_led_records_pattern_changes_and_polarity() -> None:
    clock = FakeClock()
    board = FakeBoard(monotonic=clock)
    led = StatusLed(board.output("D17"), active_high=False)
    led.set_status(NodeStatus.STARTING, clock.t)
    for _ in range(8):
        clock.t += 0.05
        led.update(clock.t)
    levels = [level for _, level in board.history("D17")]
    # active-low: logical on = pin low. Output() starts low, so the first logical "on" is no change;
    # then the 5 Hz flicker toggles the pin about every 0.1 s.
    assert levels[0] is False
    assert all(a != b for a, b in itertools.pairwise(levels))
    assert 4 <= len(levels) <= 5
    led.set_status(NodeStatus.RUNNING, clock.t)
    n = len(board.changes)
    for _ in range(40):
        clock.t += 0.05
        led.update(clock.t)
    assert board.levels["D17"] is False  # steady on (active-low)
    assert len(board.changes) <= n + 1


def test_alert_holds_its_minimum_on_time() -> None:
    board = FakeBoard()
    alert = AlertOutput(board.output("D27"), min_on_s=5.0)
    alert.set_active(True, now=0.0)
    alert.set_active(False, now=0.1)  # a one-scan zone hit
    assert alert.on and board.levels["D27"]
    alert.update(4.9)
    assert alert.on
    alert.update(5.0)
    assert not alert.on and not board.levels["D27"]
    # Stays on as long as a source is active, beyond the minimum.
    alert.set_active(True, "zones", now=10.0)
    alert.set_active(True, "tamper", now=11.0)
    alert.set_active(False, "zones", now=16.0)
    assert alert.on
    alert.set_active(False, "tamper", now=17.0)
    assert not alert.on
    assert alert.activations == 2


def test_alert_active_low_relay() -> None:
    board = FakeBoard()
    alert = AlertOutput(board.output("D27"), min_on_s=0.0, active_high=False)
    assert board.levels["D27"] is True  # released relay = high input
    alert.set_active(True, now=0.0)
    assert board.levels["D27"] is False


def test_tamper_is_debounced() -> None:
    board = FakeBoard()
    pin = board.input("D22", "up")
    board.set_input("D22", False)  # lid closed: switch pulls to ground
    tamper = TamperInput(pin, open_level=True, debounce_s=0.05)
    assert tamper.poll(0.0) is None
    board.set_input("D22", True)  # a bounce
    assert tamper.poll(0.01) is None
    board.set_input("D22", False)
    assert tamper.poll(0.03) is None
    board.set_input("D22", True)  # really opened
    assert tamper.poll(0.10) is None
    assert tamper.poll(0.16) is True
    assert tamper.events == 1
    board.set_input("D22", False)
    assert tamper.poll(0.2) is None
    assert tamper.poll(0.3) is False
    assert tamper.events == 1


def _gpio_cfg(**kw: Any) -> GpioSection:
    base: dict[str, Any] = {
        "enabled": True,
        "backend": "fake",
        "status_led_pin": "D17",
        "alert_pin": "D27",
        "alert_min_on_s": 2.0,
        "tamper_pin": "D22",
    }
    base.update(kw)
    return GpioSection(**base)


def test_controller_raises_alert_and_event_on_tamper() -> None:
    clock = FakeClock()
    board = FakeBoard(monotonic=clock)
    board.set_input("D22", False)
    changes: list[bool] = []
    gpio = GpioController(_gpio_cfg(), board, monotonic=clock, on_tamper=changes.append)
    gpio.step()
    assert not gpio.take_event()
    board.set_input("D22", True)
    for _ in range(3):
        clock.t += 0.05
        gpio.step()
    assert changes == [True]
    assert gpio.take_event() and not gpio.take_event()
    assert board.levels["D27"] is True
    assert gpio.health() == {"alert": True, "led": "starting", "tamper": "open", "tamper_events": 1}
    gpio.stop()
    assert board.levels["D27"] is False and board.levels["D17"] is False and board.closed


def test_build_gpio_disabled_or_unavailable_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import cuas_node.gpio

    assert build_gpio(GpioSection()) is None

    class NoBlinka:
        def __init__(self) -> None:
            raise cuas_node.gpio.GpioUnavailable(
                "Adafruit Blinka cannot drive GPIO on this machine: not a Pi"
            )

    monkeypatch.setattr(cuas_node.gpio, "BlinkaBoard", NoBlinka)
    assert build_gpio(GpioSection(enabled=True, backend="blinka", status_led_pin="D17")) is None
    assert "GPIO disabled" in caplog.text
    fake = build_gpio(_gpio_cfg())
    assert fake is not None and isinstance(fake.board, FakeBoard)


def test_gpio_config_validation() -> None:
    node = {"id": "n1"}
    cfg = build_config({"node": node, "gpio": {"enabled": True, "alert_pin": "D27"}}, "t")
    assert cfg.gpio.alert_pin == "D27" and cfg.gpio.alert_min_on_s == 5.0
    with pytest.raises(ConfigError) as err:
        build_config({"node": node, "gpio": {"alert_pin": "GPIO27", "tamper_pull": "sideways"}}, "t")
    text = err.value.render()
    assert "gpio.alert_pin" in text and "gpio.tamper_pull" in text


# -- through the runtime ------------------------------------------------------------------------


class QuietDriver:
    kind = "nmea"

    def __init__(self) -> None:
        self.sensor_id = "gps"
        self.state = SensorState.DOWN
        self.detail = ""

    def open(self) -> None:
        self.state = SensorState.OK

    def read(self) -> list[AnyMeasurement]:
        time.sleep(0.01)
        return []

    def close(self) -> None:
        self.state = SensorState.DOWN

    def health(self) -> SensorHealth:
        return SensorHealth(self.sensor_id, self.kind, self.state, 0, None)


def test_runtime_publishes_health_at_once_on_tamper_and_drives_the_led(
    tmp_path: Path, schemas: dict[str, dict[str, Any]]
) -> None:
    from cuas_node.kernel.clock import SystemClock
    from cuas_node.runtime import Runtime

    config = build_config(
        {"node": {"id": "gpio-test", "state_dir": str(tmp_path)}, "mqtt": {"health_interval_s": 3600}}, "t"
    )
    board = FakeBoard()
    board.set_input("D22", False)
    gpio = GpioController(_gpio_cfg(tamper_debounce_s=0.0), board)
    sink = RecordingSink()
    runtime = Runtime(config, SystemClock(), [QuietDriver()], sink, session=1, gpio=gpio)
    until = threading.Event()
    thread = threading.Thread(target=runtime.run, kwargs={"until": until}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 2.0
        while gpio.led is not None and gpio.led.status != NodeStatus.BROKER_DOWN:
            assert time.monotonic() < deadline, "LED never showed broker-down"
            time.sleep(0.02)
        assert sink.health == []  # interval is an hour
        board.set_input("D22", True)
        while not sink.health:
            assert time.monotonic() < deadline, "no health message after the tamper"
            time.sleep(0.02)
    finally:
        until.set()
        thread.join(3.0)
    payload = sink.health[0]
    assert payload["gpio"]["tamper"] == "open" and payload["gpio"]["alert"] is True
    assert payload["gps"] == {"sensor": "gps", "fix": False}
    envelope = {"type": "health", "node_id": "gpio-test", "seq": 1, **payload}
    jsonschema.validate(envelope, schemas["health"])
    assert board.levels["D17"] is False  # LED off after stop
