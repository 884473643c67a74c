"""The pin interface the GPIO logic talks to, and the two boards behind it.

Why an interface in front of Blinka: Blinka's `board` module refuses to import off a Raspberry Pi,
yet the LED patterns, the alert's minimum on-time and the tamper debounce are logic that must be
tested on any machine. So the logic talks to a two-method pin interface; `BlinkaBoard` (imported
lazily) drives real pins and `FakeBoard` records every change with a timestamp.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


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
