"""Per sensor, what became of its recent measurements: used, or dropped for a timing reason.

A rule that drops one measurement now and then (a stale scan from a backed-up stream, a stamp
from before a clock step) is counted, and that is enough. A sensor whose measurements it drops
most of the time is another matter: its clock is off from the node's, and nothing of it is used
while its driver, which receives it fine, calls it `ok`. `RecentVerdicts` keeps each sensor's
verdicts of a short window so that health can name such a sensor (`health_report.sensor_state`):
`late.StaleScans` (scans captured too long before the newest) and the core step's
`captured_after_now` (stamps ahead of the node's clock) each keep one.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

WINDOW_S = 10.0
"""How far back (by the clock the owner ages the record with) a sensor's verdicts count."""
MIN_VERDICTS = 5
"""Verdicts of a sensor in the window before it can be named (an array's scans give ~20)."""
KEPT_VERDICTS = 1024
"""At most this many kept per sensor. The owner's clock may stand still while a sensor's
measurements keep coming (stale scans never advance the newest time `StaleScans` ages by): the
record must stay bounded however long that lasts."""


class RecentVerdicts:
    """Each sensor's last verdicts: (when, how far off, dropped?), `when` on the owner's clock."""

    def __init__(self, carried: dict[str, float] | None = None) -> None:
        self._recent: dict[str, deque[tuple[float, float, bool]]] = {}
        # `restarted`: the old clock's names, for the first `WINDOW_S` of the new one (from its
        # first verdict) while a sensor has too few verdicts of its own.
        self._carried = dict(carried or {})
        self._carried_since = math.inf

    def add(self, sensor_id: str, when: float, off: float, dropped: bool) -> None:
        self._carried_since = min(self._carried_since, when)
        recent = self._recent.get(sensor_id)
        if recent is None:
            recent = self._recent[sensor_id] = deque(maxlen=KEPT_VERDICTS)
        recent.append((when, off, dropped))

    def mostly_dropped(self, now: float) -> dict[str, float]:
        """Sensors more than half of whose verdicts (at least `MIN_VERDICTS`) since `now −
        WINDOW_S` were drops, each with the median of how far off the dropped ones were. A
        sensor that stopped ages out as `now` moves on."""
        out: dict[str, float] = {}
        for sensor_id in self._recent.keys() | self._carried.keys():
            recent = self._recent.setdefault(sensor_id, deque(maxlen=KEPT_VERDICTS))
            while recent and recent[0][0] < now - WINDOW_S:
                recent.popleft()
            off = [value for _, value, dropped in recent if dropped]
            if len(recent) < MIN_VERDICTS:
                if sensor_id in self._carried and not now >= self._carried_since + WINDOW_S:
                    out[sensor_id] = self._carried[sensor_id]
            elif 2 * len(off) > len(recent):
                out[sensor_id] = float(np.median(off))
        return out

    def restarted(self, now: float) -> RecentVerdicts:
        """A fresh record for a clock that stepped back (its times are gone), which names the
        sensors this one names until each has enough verdicts on the new clock: the health
        message sent at the step must not call them `ok`."""
        return RecentVerdicts(self.mostly_dropped(now))
