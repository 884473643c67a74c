"""When a scanning radar has looked at its whole coverage.

A scanning radar's beam sweeps its azimuth sector once every period and it stamps each plot with
the time the beam passed it, so no plot, and no instant, is a look at the whole coverage: fused
as frames, every plot would charge a miss to every other track in view (a sweep of 30 plots was
30 looks, and no track ever confirmed). Its plots are fused as partial scans at their own times,
and the coverage counts as looked at once a period: every track it should have seen and that no
plot of the last period hit is then charged one miss (`TrackManager.record` with the sweep's hits
excused). Any window of one period sweeps every azimuth once, whatever its phase, so the looks
need not know where the beam is: they are counted from the radar's first plot.
"""

from __future__ import annotations

import math

# A radar silent for longer than this many sweeps may have been off (unplugged, restarted): the
# sweeps of the silence are not looks, and counting starts again at its next plot.
_SILENT_SWEEPS = 2.0


class SweepLooks:
    """Per scanning radar, the looks its sweeps completed (by capture time)."""

    def __init__(self, periods_s: dict[str, float]) -> None:
        self.periods_s = periods_s  # sensor id -> sweep period, of the radars that sweep
        self._next: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def due(self, sensor_id: str, t: float) -> list[float]:
        """The looks completed before a plot captured at `t`, in order (most often none, once a
        period one): fuse each as an empty full scan before the plot."""
        period = self.periods_s[sensor_id]
        last = self._last.get(sensor_id, -math.inf)
        self._last[sensor_id] = max(last, t)
        upcoming = self._next.get(sensor_id)
        if upcoming is None or t - last > _SILENT_SWEEPS * period:
            self._next[sensor_id] = t + period
            return []
        looks = []
        while t >= upcoming:
            looks.append(upcoming)
            upcoming += period
        self._next[sensor_id] = upcoming
        return looks
