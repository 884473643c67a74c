"""The node's few GPIO lines: a status LED, an alert output (relay or buzzer) and a tamper switch.

Why an interface in front of Blinka: Blinka's `board` module refuses to import off a Raspberry Pi,
yet the LED patterns, the alert's minimum on-time and the tamper debounce are logic that must be
tested on any machine. So the logic talks to a two-method pin interface; `BlinkaBoard` (imported
lazily) drives real pins and `FakeBoard` records every change with a timestamp. All timing takes
an explicit `now` (monotonic seconds), so tests use a fake clock and never sleep.

Polarity lives here, not in the board: `*_active_high = false` in `[gpio]` serves a relay board
that switches on a low input or an LED wired to 3V3, without touching the logic.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from node.config import GpioSection

log = logging.getLogger("cuas.gpio")

_STEP_S = 0.05  # 20 Hz: fine enough for the LED patterns and the tamper debounce


class OutputPin(Protocol):
    def set(self, level: bool) -> None:
        """Drive the pin high (True) or low."""
        ...


class InputPin(Protocol):
    def get(self) -> bool:
        """The pin's level: True = high."""
        ...


class Board(Protocol):
    def output(self, name: str) -> OutputPin: ...
    def input(self, name: str, pull: str) -> InputPin: ...
    def close(self) -> None: ...


class GpioUnavailable(Exception):
    """Blinka could not drive the pins (not a Pi, missing permissions, unknown pin)."""


# -- Blinka (the Pi) ---------------------------------------------------------------------------


class _BlinkaOut:
    def __init__(self, io: Any) -> None:
        self._io = io

    def set(self, level: bool) -> None:
        self._io.value = bool(level)


class _BlinkaIn:
    def __init__(self, io: Any) -> None:
        self._io = io

    def get(self) -> bool:
        return bool(self._io.value)


class BlinkaBoard:
    """Real pins through Adafruit Blinka; `board` is imported here, never at module import."""

    def __init__(self) -> None:
        try:
            import board
            import digitalio
        except (ImportError, NotImplementedError, RuntimeError, OSError) as exc:
            raise GpioUnavailable(f"Adafruit Blinka cannot drive GPIO on this machine: {exc}") from exc
        self._board = board
        self._digitalio = digitalio
        self._ios: list[Any] = []

    def _pin(self, name: str) -> Any:
        pin = getattr(self._board, name, None)
        if pin is None:
            raise GpioUnavailable(f"this board has no pin {name}")
        return pin

    def output(self, name: str) -> OutputPin:
        try:
            io = self._digitalio.DigitalInOut(self._pin(name))
            io.switch_to_output(value=False)
        except (OSError, RuntimeError, ValueError) as exc:
            raise GpioUnavailable(f"cannot use {name} as an output: {exc}") from exc
        self._ios.append(io)
        return _BlinkaOut(io)

    def input(self, name: str, pull: str) -> InputPin:
        pulls = {"up": self._digitalio.Pull.UP, "down": self._digitalio.Pull.DOWN, "none": None}
        try:
            io = self._digitalio.DigitalInOut(self._pin(name))
            io.switch_to_input(pull=pulls[pull])
        except (OSError, RuntimeError, ValueError) as exc:
            raise GpioUnavailable(f"cannot use {name} as an input: {exc}") from exc
        self._ios.append(io)
        return _BlinkaIn(io)

    def close(self) -> None:
        for io in self._ios:
            with contextlib.suppress(OSError, RuntimeError):
                io.deinit()
        self._ios.clear()


# -- Fake (tests, simulator, bench) ------------------------------------------------------------


class _FakeOut:
    def __init__(self, board: FakeBoard, name: str) -> None:
        self._board = board
        self._name = name

    def set(self, level: bool) -> None:
        self._board._record(self._name, bool(level))


class _FakeIn:
    def __init__(self, board: FakeBoard, name: str) -> None:
        self._board = board
        self._name = name

    def get(self) -> bool:
        return self._board.inputs.get(self._name, False)


@dataclass
class FakeBoard:
    """Pins in memory: outputs record `(t, pin, level)` on every change; inputs are set by a test.

    An input with a pull-up reads high until a test drives it, as a real open switch would."""

    monotonic: Callable[[], float] = time.monotonic
    levels: dict[str, bool] = field(default_factory=dict)
    changes: list[tuple[float, str, bool]] = field(default_factory=list)
    inputs: dict[str, bool] = field(default_factory=dict)
    closed: bool = False

    def output(self, name: str) -> OutputPin:
        self._record(name, False)
        return _FakeOut(self, name)

    def input(self, name: str, pull: str) -> InputPin:
        self.inputs.setdefault(name, pull == "up")
        return _FakeIn(self, name)

    def set_input(self, name: str, level: bool) -> None:
        self.inputs[name] = level

    def close(self) -> None:
        self.closed = True

    def _record(self, name: str, level: bool) -> None:
        if self.levels.get(name) != level:
            self.levels[name] = level
            self.changes.append((self.monotonic(), name, level))

    def history(self, name: str) -> list[tuple[float, bool]]:
        return [(t, level) for t, pin, level in self.changes if pin == name]


def make_board(cfg: GpioSection) -> Board:
    return FakeBoard() if cfg.backend == "fake" else BlinkaBoard()


# -- Status LED --------------------------------------------------------------------------------


class NodeStatus(StrEnum):
    """What the LED tells a technician at the mast, most urgent last (see `status_for`)."""

    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    BROKER_DOWN = "broker-down"
    STOPPED = "stopped"


# Each pattern is a cycle of (level, seconds); chosen to be told apart at a glance from the ground.
PATTERNS: dict[NodeStatus, tuple[tuple[bool, float], ...]] = {
    NodeStatus.STARTING: ((True, 0.1), (False, 0.1)),  # fast flicker (5 Hz)
    NodeStatus.RUNNING: ((True, 1.0),),  # steady on
    NodeStatus.DEGRADED: ((True, 0.5), (False, 0.5)),  # slow blink (1 Hz)
    NodeStatus.BROKER_DOWN: ((True, 0.15), (False, 0.15), (True, 0.15), (False, 1.55)),  # double flash
    NodeStatus.STOPPED: ((False, 1.0),),  # off
}


def pattern_level(status: NodeStatus, elapsed_s: float) -> bool:
    """The LED's logical level `elapsed_s` after the pattern began."""
    steps = PATTERNS[status]
    period = sum(d for _, d in steps)
    phase = elapsed_s % period
    for level, duration in steps:
        if phase < duration:
            return level
        phase -= duration
    return steps[-1][0]


def status_for(running: bool, broker_connected: bool, sensor_states: list[str]) -> NodeStatus:
    """The LED status: broker down first (nothing leaves the node), then any sensor not `ok`."""
    if not running:
        return NodeStatus.STARTING
    if not broker_connected:
        return NodeStatus.BROKER_DOWN
    if any(state != "ok" for state in sensor_states):
        return NodeStatus.DEGRADED
    return NodeStatus.RUNNING


class StatusLed:
    def __init__(self, pin: OutputPin, active_high: bool = True) -> None:
        self.pin = pin
        self.active_high = active_high
        self.status = NodeStatus.STARTING
        self._since: float | None = None
        self._level: bool | None = None

    def set_status(self, status: NodeStatus, now: float) -> None:
        """Switch pattern; the new one starts at its beginning so a change is visible at once."""
        if status != self.status or self._since is None:
            self.status = status
            self._since = now
            self.update(now)

    def update(self, now: float) -> None:
        if self._since is None:
            self._since = now
        level = pattern_level(self.status, now - self._since)
        if level != self._level:
            self._level = level
            self.pin.set(level == self.active_high)


# -- Alert output ------------------------------------------------------------------------------


class AlertOutput:
    """A relay or buzzer that is on while any source (zone alerts, tamper) is active, and then for
    at least `min_on_s` after it came on, so a one-scan zone hit still gives an audible alert and a
    flickering input cannot chatter the relay."""

    def __init__(self, pin: OutputPin | None, min_on_s: float, active_high: bool = True) -> None:
        self.pin = pin
        self.min_on_s = min_on_s
        self.active_high = active_high
        self.sources: set[str] = set()
        self.on = False
        self.on_since = 0.0
        self.activations = 0
        self._drive(False)

    def set_active(self, active: bool, source: str = "zones", now: float | None = None) -> None:
        """Raise or clear one source's request (the zone logic calls this with source="zones")."""
        now = time.monotonic() if now is None else now
        if active:
            self.sources.add(source)
            if not self.on:
                self.on = True
                self.on_since = now
                self.activations += 1
                self._drive(True)
        else:
            self.sources.discard(source)
        self.update(now)

    def update(self, now: float) -> None:
        if self.on and not self.sources and now - self.on_since >= self.min_on_s:
            self.on = False
            self._drive(False)

    def _drive(self, on: bool) -> None:
        if self.pin is not None:
            self.pin.set(on == self.active_high)


# -- Tamper input ------------------------------------------------------------------------------


class TamperInput:
    """The enclosure switch, debounced. The enclosure is presumed closed at start, so a node that
    boots with its lid open reports the tamper as soon as the debounce time has passed."""

    def __init__(self, pin: InputPin, open_level: bool = True, debounce_s: float = 0.05) -> None:
        self.pin = pin
        self.open_level = open_level
        self.debounce_s = debounce_s
        self.is_open = False
        self.events = 0
        self.last_change: float | None = None
        self._candidate = False
        self._candidate_since = 0.0

    def poll(self, now: float) -> bool | None:
        """Sample the pin; returns the new state (True = opened) when it changed, else None."""
        raw_open = self.pin.get() == self.open_level
        if raw_open != self._candidate:
            self._candidate = raw_open
            self._candidate_since = now
        if self._candidate != self.is_open and now - self._candidate_since >= self.debounce_s:
            self.is_open = self._candidate
            self.last_change = now
            if self.is_open:
                self.events += 1
            return self.is_open
        return None


# -- Controller --------------------------------------------------------------------------------


class GpioController:
    """Owns the board and the three functions; `step(now)` advances all of them (a 20 Hz thread in
    the node, called directly with a fake clock in tests)."""

    def __init__(
        self,
        cfg: GpioSection,
        board: Board,
        monotonic: Callable[[], float] = time.monotonic,
        on_tamper: Callable[[bool], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.board = board
        self.monotonic = monotonic
        self.on_tamper = on_tamper
        self.led = (
            StatusLed(board.output(cfg.status_led_pin), cfg.status_led_active_high)
            if cfg.status_led_pin
            else None
        )
        self.alert = AlertOutput(
            board.output(cfg.alert_pin) if cfg.alert_pin else None, cfg.alert_min_on_s, cfg.alert_active_high
        )
        self.tamper = (
            TamperInput(
                board.input(cfg.tamper_pin, cfg.tamper_pull),
                open_level=cfg.tamper_open_level == "high",
                debounce_s=cfg.tamper_debounce_s,
            )
            if cfg.tamper_pin
            else None
        )
        self._lock = threading.Lock()
        self._pending_event = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.led is not None:
            self.led.set_status(NodeStatus.STARTING, monotonic())

    def set_status(self, status: NodeStatus, now: float | None = None) -> None:
        if self.led is not None:
            with self._lock:
                self.led.set_status(status, self.monotonic() if now is None else now)

    def set_alert(self, active: bool, source: str = "zones", now: float | None = None) -> None:
        with self._lock:
            self.alert.set_active(active, source, self.monotonic() if now is None else now)

    def step(self, now: float | None = None) -> None:
        now = self.monotonic() if now is None else now
        changed: bool | None = None
        with self._lock:
            if self.tamper is not None:
                changed = self.tamper.poll(now)
                if changed is not None:
                    self._pending_event = True
                    if self.cfg.tamper_alert:
                        self.alert.set_active(changed, "tamper", now)
            self.alert.update(now)
            if self.led is not None:
                self.led.update(now)
        if changed is not None:
            if changed:
                log.warning("TAMPER: enclosure opened (switch on %s)", self.cfg.tamper_pin)
            else:
                log.info("tamper: enclosure closed again")
            if self.on_tamper is not None:
                self.on_tamper(changed)

    def take_event(self) -> bool:
        """True once after every tamper change: the runtime then publishes `health` at once."""
        with self._lock:
            pending, self._pending_event = self._pending_event, False
            return pending

    def health(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"alert": self.alert.on}
            if self.led is not None:
                out["led"] = str(self.led.status)
            if self.tamper is not None:
                out["tamper"] = "open" if self.tamper.is_open else "closed"
                out["tamper_events"] = self.tamper.events
            return out

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpio", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """LED off, alert off (whatever its on-time), pins released."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        now = self.monotonic()
        with self._lock:
            if self.led is not None:
                self.led.set_status(NodeStatus.STOPPED, now)
            self.alert.sources.clear()
            self.alert.min_on_s = 0.0
            self.alert.update(now)
        self.board.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a GPIO glitch must never take the node down
                log.exception("GPIO step failed")
            self._stop.wait(_STEP_S)


def build_gpio(
    cfg: GpioSection, on_tamper: Callable[[bool], None] | None = None, board: Board | None = None
) -> GpioController | None:
    """The node's GPIO, or None when disabled or unavailable (logged: sensors matter more than an
    LED, so a GPIO failure never stops the node; `cuas-node doctor` reports it as FAIL)."""
    if not cfg.enabled:
        return None
    try:
        return GpioController(cfg, board if board is not None else make_board(cfg), on_tamper=on_tamper)
    except GpioUnavailable as exc:
        log.error("GPIO disabled: %s", exc)
        return None
