"""The one injectable clock of the pipeline.

Every stage asks a `Clock` for the time instead of calling `time.time()`, so that in `sim` the whole
node runs on the scenario's clock (ground truth and tracks share one time base at any `--speed`)
and replay can run as fast as the CPU allows while staying deterministic.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

STEP_S = 1.0
"""A jump of the wall clock (`now`) larger than this is a step (NTP or a GPS-fed chrony correcting
it, an operator's `date`), not jitter: far above a cycle's and a USB transfer's, within the span of
a track's history of past estimates (`fusion.late`), so a smaller step is absorbed as lateness."""


class Clock(Protocol):
    def now(self) -> float:
        """UTC seconds since the Unix epoch, on this clock's time base."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps backwards (receive times, rate limits)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    """Wall clock of the machine: what `cuas-node run` uses on the Pi."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ScaledClock:
    """Scenario time that starts at `epoch` and runs `speed` times faster than the wall clock.

    Scenario time and its monotonic twin advance together, so a receive timestamp and a capture
    timestamp taken in the simulator are directly comparable.
    """

    def __init__(self, epoch: float, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.epoch = epoch
        self.speed = speed
        self._wall_start: float | None = None
        self._started = threading.Event()

    def start(self, epoch: float | None = None) -> None:
        """Let scenario time run, from `epoch` if given (a scenario on today's wall clock starts at
        the moment it really starts, not when the node began setting up). Before this the clock
        stands at its epoch, so the node can finish starting up (imports, broker connection)
        without the scenario running away from it."""
        if self._wall_start is None:
            if epoch is not None:
                self.epoch = max(self.epoch, epoch)  # never backwards
            self._wall_start = time.monotonic()
            self._started.set()

    def elapsed(self) -> float:
        """Scenario seconds since the epoch."""
        if self._wall_start is None:
            return 0.0
        return (time.monotonic() - self._wall_start) * self.speed

    def now(self) -> float:
        return self.epoch + self.elapsed()

    def monotonic(self) -> float:
        return self.elapsed()

    def sleep(self, seconds: float) -> None:
        self._started.wait()
        if seconds > 0:
            time.sleep(seconds / self.speed)

    def sleep_until(self, scenario_elapsed: float) -> None:
        """Sleep until `scenario_elapsed` seconds after the epoch (no drift across many calls)."""
        self.sleep(scenario_elapsed - self.elapsed())


class ManualClock:
    """Time that moves only when told (`set`) or when its owner sleeps: replay at full speed,
    the evaluation runner and register-level simulations run as fast as the CPU allows and stay
    deterministic. `monotonic()` is seconds since `epoch`, like `ScaledClock`."""

    def __init__(self, epoch: float = 1_700_000_000.0) -> None:
        self.epoch = epoch
        self.t = 0.0

    def now(self) -> float:
        return self.epoch + self.t

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.t += seconds

    def set(self, t: float) -> None:
        """Jump to `t` seconds after the epoch."""
        self.t = t
