"""The node's few GPIO lines: a status LED, an alert output (relay or buzzer) and a tamper switch.

Why an interface in front of Blinka: Blinka's `board` module refuses to import off a Raspberry Pi,
yet the LED patterns, the alert's minimum on-time and the tamper debounce are logic that must be
tested on any machine. So the logic (`cuas_node.gpio_lines`) talks to a two-method pin interface
(`cuas_node.gpio_board`); `BlinkaBoard` (imported lazily) drives real pins and `FakeBoard` records
every change with a timestamp. All timing takes an explicit `now` (monotonic seconds), so tests
use a fake clock and never sleep.

Polarity lives in the logic, not in the board: `*_active_high = false` in `[gpio]` serves a relay
board that switches on a low input or an LED wired to 3V3, without touching the logic.

This module holds the controller that runs the three functions and `build_gpio`, and re-exports
the names other code imports from `cuas_node.gpio`. `make_board` looks `BlinkaBoard` up here, so a test
can replace `cuas_node.gpio.BlinkaBoard`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cuas_node.config import GpioSection
from cuas_node.gpio_board import BlinkaBoard, Board, FakeBoard, GpioUnavailable
from cuas_node.gpio_board import InputPin as InputPin
from cuas_node.gpio_board import OutputPin as OutputPin
from cuas_node.gpio_lines import PATTERNS as PATTERNS
from cuas_node.gpio_lines import AlertOutput, NodeStatus, StatusLed, TamperInput
from cuas_node.gpio_lines import pattern_level as pattern_level
from cuas_node.gpio_lines import status_for as status_for

log = logging.getLogger(__name__)

_STEP_S = 0.05  # 20 Hz: fine enough for the LED patterns and the tamper debounce


def make_board(cfg: GpioSection) -> Board:
    return FakeBoard() if cfg.backend == "fake" else BlinkaBoard()


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
