"""The reorder window: hold measurements briefly so that fusion sees them in capture-time order.

Sensors deliver late by different amounts (a radar frame after its UART transfer, an acoustic
bearing after its analysis block, a GPS epoch a sentence period late); fusing each batch as it
arrives would make a track jump back and forth in time. Measurements are held until the newest
capture time seen (or the step's clock) is `window_s` past them, then released in order. One that
arrives after its turn is still released (fusion retrodicts it) and counted as `late`.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable

from cuas_node.kernel.measurement import AnyMeasurement


class ReorderBuffer:
    def __init__(self, window_s: float, capture_time: Callable[[AnyMeasurement], float]) -> None:
        self.window_s = window_s
        self.capture_time = capture_time
        self.late = 0
        self._pending: list[tuple[float, int, AnyMeasurement]] = []
        self._seq = itertools.count()
        self._released_until = -math.inf

    def __len__(self) -> int:
        return len(self._pending)

    def push(self, batch: Iterable[AnyMeasurement]) -> list[AnyMeasurement]:
        """Hold a batch; return, in capture-time order, all that is older than the window behind
        the newest of it."""
        latest = -math.inf
        for m in batch:
            t = self.capture_time(m)
            latest = max(latest, t)
            heapq.heappush(self._pending, (t, next(self._seq), m))
        if latest == -math.inf:
            return []
        return self.release(latest - self.window_s)

    def due(self, now: float) -> list[AnyMeasurement]:
        """What the clock says is due: everything older than the window behind `now`."""
        return self.release(now - self.window_s)

    def release(self, until: float) -> list[AnyMeasurement]:
        """Everything held with a capture time at or before `until` (math.inf: everything)."""
        ready: list[AnyMeasurement] = []
        while self._pending and self._pending[0][0] <= until:
            t, _, m = heapq.heappop(self._pending)
            if t < self._released_until:
                self.late += 1  # fused anyway, by retrodiction; counted for health
            ready.append(m)
        if self._released_until < until < math.inf:
            self._released_until = until
        return ready
