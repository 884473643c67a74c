"""One capture time for each frame of a radar whose extractor stamps each plot as it comes out.

A radar that looks at its whole coverage at once (not `sweeps`) reports a frame: every plot of it
was measured at one instant, and fusion takes each capture time as one look, which charges a
miss to every track it does not hit. An extractor that stamps each plot as it emits it spreads a
frame over milliseconds; fused a time at a time, each plot was a look of its own, and no track
confirmed (an outside test: 10 Hz, plots up to 3 ms apart, not one `tracks` message).

So, per radar, delivery by delivery (each in capture-time order): a stamp that follows the
first of its frame by at most `FRAME_STAMP_SPREAD` of the configured period, and by at most a
quarter of the silence before that first stamp, continues the frame (a *run*), and takes the
frame's first stamp before anything else sees it (the core step, ahead of its reorder window:
a frame is then one scan however other sensors' measurements fall between its plots, and a
frame delivered twice is recognised). The quarter keeps a radar whose `rate_hz` is set far too
low (frames every 100 ms read as 1 Hz) from having its evenly spaced frames joined in pairs:
those are no runs (but for its first two frames, before any silence was seen). A radar whose
frames share one stamp never makes a run, and nothing of it changes.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Iterable, Sequence

from cuas_node.fusion.params import RadarSensor
from cuas_node.kernel.measurement import AnyMeasurement

FRAME_STAMP_SPREAD = 0.125
"""How far apart, as a fraction of its configured period, the stamps of one frame may be."""
_STAMP = operator.attrgetter("t_capture")
RUN_GAP_RATIO = 4.0
"""A run's stamps lie within this fraction of the silence before its first (see the module)."""


def frame_window_s(sensor: RadarSensor) -> float:
    """The stamps of one frame lie within this of its first plot's (`FRAME_STAMP_SPREAD` of its period)."""
    return FRAME_STAMP_SPREAD / sensor.scan_rate_hz


@dataclasses.dataclass
class FrameRuns:
    """One radar's capture times, fed as they are delivered (`add`): which begin a frame, which
    continue it (also a plot of it delivered after a later one), and how many frames came as
    runs of several times."""

    window_s: float
    first: float = -math.inf  # the current frame's first time
    last: float = -math.inf
    before_s: float = math.inf  # the silence before `first` (unknown before the first frame)
    frames: int = 0
    runs: int = 0  # frames that came as runs of several times
    steps: int = 0  # from one frame to a later one (a clock stepped back starts afresh)
    span_s: float = 0.0  # their sum
    least_step_s: float = math.inf  # the shortest of them

    def add(self, t: float) -> float:
        """The frame time of a plot stamped `t`: the first time of its frame."""
        if (
            self.first - t <= self.window_s
            and RUN_GAP_RATIO * (self.last - t) <= self.before_s
            and t <= self.last
        ):
            return self.first  # a plot of the run delivered after a later one (even its first)
        spread = t - self.first
        if self.last < t and spread <= self.window_s and RUN_GAP_RATIO * spread <= self.before_s:
            self.runs += self.last == self.first  # the frame's second time: a run
            self.last = t
            return self.first
        self.before_s = t - self.last if t > self.last else math.inf
        if math.isfinite(self.first) and t > self.first:
            self.steps += 1
            self.span_s += t - self.first
            self.least_step_s = min(self.least_step_s, t - self.first)
        self.first = self.last = t
        self.frames += 1
        return t

    def per_second(self) -> float:
        """Frames a second, over the steps from one to a later one."""
        return self.steps / self.span_s if self.span_s > 0 else 0.0


class FrameStamps:
    """The frame radars of a node, each with its `FrameRuns`; `restamp` gives the plots (and
    empty scans) of a radar that stamps apart their frame's time."""

    def __init__(self, sensors: Iterable[object]) -> None:
        self.radars = {
            s.sensor_id: FrameRuns(frame_window_s(s))
            for s in sensors
            if isinstance(s, RadarSensor) and not s.sweeps
        }

    def restamp(self, batch: Sequence[AnyMeasurement]) -> Sequence[AnyMeasurement]:
        """`batch` with each frame radar's plots at their frame's time, in capture-time order
        (the reorder window orders them so anyway): a frame's plots delivered together in any
        order are one run (helper-86: shuffled, 406 scans for 150 frames). Asked of every plot of
        every step: a sensor and stamp like the one before are not looked up again, and a batch
        that nothing changed is returned as it is. (A frame radar's id is only ever its plots'
        and empty scans'.)"""
        if not self.radars:
            return batch
        ordered = sorted(batch, key=_STAMP)
        out: list[AnyMeasurement] | None = None
        sensor_id, stamp, frame_t = None, math.nan, math.nan
        for i, m in enumerate(ordered):
            if m.t_capture != stamp or m.sensor_id != sensor_id:
                sensor_id, stamp = m.sensor_id, m.t_capture
                runs = self.radars.get(sensor_id)
                frame_t = stamp if runs is None else runs.add(stamp)
            if frame_t != stamp:
                if out is None:
                    out = ordered[:i]
                out.append(dataclasses.replace(m, t_capture=frame_t))
            elif out is not None:
                out.append(m)
        return ordered if out is None else out

    def stamped_apart(self) -> dict[str, int]:
        """Per radar that stamped a frame's plots apart, the frames that came as runs."""
        return {sensor_id: runs.runs for sensor_id, runs in self.radars.items() if runs.runs}
