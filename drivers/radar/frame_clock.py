"""Capture times for a radar's numbered frames when the host reads them late (sans-IO).

A TI board sends frame n at n·P on its own clock; the node stamps a frame when its read returns.
On a busy host (a Raspberry Pi running everything else, or the simulator starved of CPU) one read
may return several frames at once, all stamped with the same instant: fusion then takes two looks
at a target as one scan holding two detections of it, which splits tracks and makes up speeds.
Arrival times are the true times plus a delay that is never negative, so the earliest arrivals
relative to the frame grid (the lower envelope of arrival − n·P) are the frames that waited least;
the grid through them gives every frame its time.

The period is measured, not taken from the profile: a board running a profile the node did not
send, an advanced frame config, or the simulator (which emits at its own rate) would make a
configured period wrong. Frames arriving on time (within a quarter period of the grid) keep their
own stamp, so a host that keeps up sees no change at all.
"""

from __future__ import annotations

from collections import deque

MIN_FRAMES = 24  # fewer frames than this say too little about the period: stamps are left alone
PERIOD_WINDOW = 256  # frames the period is measured over (~13 s at 20 Hz)
OFFSET_WINDOW = 40  # frames the grid's position is taken from (~2 s at 20 Hz: drift stays small)
LATE_FRACTION = 0.25  # a frame later than this part of a period behind the grid is re-stamped
MAX_GAP_FRAMES = 1000  # a longer jump in the frame number is a restart of the counter


class FrameClock:
    """Feed (frame number, arrival time) in arrival order; get the time to stamp the frame with."""

    def __init__(self) -> None:
        self._frames: deque[tuple[int, float]] = deque(maxlen=PERIOD_WINDOW)
        self._recent: deque[tuple[int, float]] = deque(maxlen=OFFSET_WINDOW)
        self._period: float | None = None
        self._measured_at = 0  # frames seen when the period was last measured
        self._seen = 0
        self.restamped = 0  # frames given the grid's time instead of their late arrival

    def stamp(self, number: int, arrival: float) -> float:
        """The frame's arrival time, or the grid's time for it when it came in late."""
        if self._frames:
            last_number, last_arrival = self._frames[-1]
            if not 0 < number - last_number <= MAX_GAP_FRAMES or arrival < last_arrival:
                self.reset()  # the counter restarted (or the clock stepped back)
        self._frames.append((number, arrival))
        self._recent.append((number, arrival))
        self._seen += 1
        period = self.period()
        if period is None:
            return arrival
        offset = min(t - (n - number) * period for n, t in self._recent)  # the grid time of this frame
        if arrival - offset <= LATE_FRACTION * period:
            return arrival
        self.restamped += 1
        return offset

    def reset(self) -> None:
        self._frames.clear()
        self._recent.clear()
        self._period, self._seen, self._measured_at = None, 0, 0

    def period(self) -> float | None:
        """The frame period, measured again every `MIN_FRAMES` frames (see `measure_period`)."""
        if self._period is None or self._seen - self._measured_at >= MIN_FRAMES:
            self._period = measure_period(list(self._frames))
            self._measured_at = self._seen
        return self._period


def measure_period(frames: list[tuple[int, float]]) -> float | None:
    """The frame period of (number, arrival) pairs: the slope between the least-delayed frame of
    the older half and of the newer half (delays only ever add, so the least-delayed frames lie
    nearest the grid), after a first guess from the ends, picked again along each new slope
    until the picks stay (a guess from an end frame held in a stall is a period too steep over
    a few dozen frames: along it, the last frames of each half looked least delayed, and the
    slope between two of them was off by their delays: 0.7 % at 48 frames, a stamp 5 ms early).
    None with too few frames to tell."""
    if len(frames) < MIN_FRAMES:
        return None
    (n0, t0), (n1, t1) = frames[0], frames[-1]
    if t1 <= t0:
        return None
    slope = (t1 - t0) / (n1 - n0)
    half = len(frames) // 2
    picks: tuple[tuple[int, float], tuple[int, float]] | None = None
    for _ in range(4):  # (two passes settle it in practice)
        older = min(frames[:half], key=lambda f: f[1] - (f[0] - n0) * slope)
        newer = min(frames[half:], key=lambda f: f[1] - (f[0] - n0) * slope)
        if (older, newer) == picks or newer[0] <= older[0] or newer[1] <= older[1]:
            break
        picks = (older, newer)
        slope = (newer[1] - older[1]) / (newer[0] - older[0])
    return slope
