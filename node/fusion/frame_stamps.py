"""One capture time for each frame of a radar whose extractor stamps each plot as it comes out.

A radar that looks at its whole coverage at once (not `sweeps`) reports a frame: every plot of it
was measured at one instant, and fusion takes each capture time as one look, which charges a
miss to every track it does not hit. An extractor that stamps each plot as it emits it spreads a
frame over milliseconds; fused a time at a time, each plot was a look of its own, and no track
confirmed (an outside test: 10 Hz, plots up to 3 ms apart, not one `tracks` message).

So, per radar, in arrival order: a stamp that follows the first of its frame by at most
`FRAME_STAMP_SPREAD` of the configured period, and by at most a quarter of the silence before
that first stamp, continues the frame (a *run*), and takes the frame's first stamp before anything
else sees it (the core step, ahead of its reorder window: a frame is then one scan however other
sensors' measurements fall between its plots, and a frame delivered twice is recognised). The
quarter keeps a radar whose `rate_hz` is set far too low (frames every 100 ms read as 1 Hz) from
having its evenly spaced frames joined in pairs: those are no runs (but for its first two
frames, before any silence was seen). A radar whose frames share one stamp never makes a run,
and nothing of it changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from cuas_node.fusion.params import RadarSensor
from cuas_node.kernel.measurement import AnyMeasurement, EmptyRadarScan, RadarDetection

FRAME_STAMP_SPREAD = 0.125
"""How far apart, as a fraction of its configured period, the stamps of one frame may be."""
RUN_GAP_RATIO = 4.0
"""A run's stamps lie within this fraction of the silence before its first (see the module)."""


def frame_window_s(sensor: RadarSensor) -> float:
    """The stamps of one frame lie within this of its first plot's (`FRAME_STAMP_SPREAD` of its period)."""
    return FRAME_STAMP_SPREAD / sensor.scan_rate_hz


@dataclasses.dataclass
class FrameRuns:
    """One radar's capture times, fed in arrival order (`add`): which begin a frame, which
    continue it, and how many frames came as runs of several times."""

    window_s: float
    first: float = -math.inf  # the current frame's first time
    last: float = -math.inf
    before_s: float = math.inf  # the silence before `first` (unknown before the first frame)
    frames: int = 0
    runs: int = 0  # frames that came as runs of several times

    def add(self, t: float) -> float:
        """The frame time of a plot stamped `t`: the first time of its frame."""
        if t == self.last:
            return self.first
        spread = t - self.first
        if self.last < t and spread <= self.window_s and RUN_GAP_RATIO * spread <= self.before_s:
            self.runs += self.last == self.first  # the frame's second time: a run
            self.last = t
            return self.first
        self.before_s = t - self.last if t > self.last else math.inf
        self.first = self.last = t
        self.frames += 1
        return t


class FrameStamps:
    """The frame radars of a node, each with its `FrameRuns`; `restamp` gives the plots (and
    empty scans) of a radar that stamps apart their frame's time."""

    def __init__(self, sensors: Iterable[object]) -> None:
        self.radars = {
            s.sensor_id: FrameRuns(frame_window_s(s))
            for s in sensors
            if isinstance(s, RadarSensor) and not s.sweeps
        }

    def restamp(self, batch: Sequence[AnyMeasurement]) -> list[AnyMeasurement]:
        out: list[AnyMeasurement] = []
        for m in batch:
            runs = self.radars.get(m.sensor_id) if isinstance(m, RadarDetection | EmptyRadarScan) else None
            t = m.t_capture if runs is None else runs.add(m.t_capture)
            out.append(m if t == m.t_capture else dataclasses.replace(m, t_capture=t))
        return out

    def stamped_apart(self) -> dict[str, int]:
        """Per radar that stamped a frame's plots apart, the frames that came as runs."""
        return {sensor_id: runs.runs for sensor_id, runs in self.radars.items() if runs.runs}
