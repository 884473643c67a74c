"""The logic of the node's three GPIO functions: status LED patterns, the alert output's minimum
on-time, and the tamper switch's debounce.

All timing takes an explicit `now` (monotonic seconds), so tests use a fake clock and never sleep.
Polarity (`active_high`, `open_level`) is applied here, not in the board, so a relay board that
switches on a low input or an LED wired to 3V3 needs no change to the logic.
"""

from __future__ import annotations

import time
from enum import StrEnum

from cuas_node.gpio_board import InputPin, OutputPin

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
