"""The reorder window: hold measurements briefly so that fusion sees them in capture-time order.

Sensors deliver late by different amounts (a radar frame after its UART transfer, an acoustic
bearing after its analysis block, a GPS epoch a sentence period late); fusing each batch as it
arrives would make a track jump back and forth in time. Measurements are held until the newest
capture time seen (or the step's clock) is `window_s` past them, then released in order. One that
arrives after its turn is still released (fusion retrodicts it) and counted as `late`.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable, Iterable

from cuas_node.kernel.measurement import AnyMeasurement


class ReorderBuffer:
    """Held measurements are one list kept sorted by (capture time, arrival): a radar frame is
    a hundred detections, so a batch is merged by one sort (Timsort merges sorted runs in C) and
    released by one slice, not pushed and popped item by item."""

    def __init__(self, window_s: float, capture_time: Callable[[AnyMeasurement], float]) -> None:
        self.window_s = window_s
        self.capture_time = capture_time
        self.late = 0
        self._pending: list[tuple[float, int, AnyMeasurement]] = []
        self._arrivals = 0  # arrival order, the tie-break between equal capture times
        self._released_until = -math.inf

    def __len__(self) -> int:
        return len(self._pending)

    def push(self, batch: Iterable[AnyMeasurement]) -> list[AnyMeasurement]:
        """Hold a batch; return, in capture-time order, all that is older than the window behind
        the newest of it."""
        capture_time, first = self.capture_time, self._arrivals
        held = [(capture_time(m), first + i, m) for i, m in enumerate(batch)]
        if not held:
            return []
        self._arrivals += len(held)
        latest = max(held, key=_capture)[0]
        self._pending.extend(held)
        self._pending.sort(key=_order)
        return self.release(latest - self.window_s)

    def due(self, now: float) -> list[AnyMeasurement]:
        """What the clock says is due: everything older than the window behind `now`."""
        return self.release(now - self.window_s)

    def release(self, until: float) -> list[AnyMeasurement]:
        """Everything held with a capture time at or before `until` (math.inf: everything)."""
        end = bisect.bisect_right(self._pending, until, key=_capture)
        ready, self._pending = self._pending[:end], self._pending[end:]
        # Released after their turn: fused anyway, by retrodiction; counted for health.
        self.late += bisect.bisect_left(ready, self._released_until, key=_capture)
        if self._released_until < until < math.inf:
            self._released_until = until
        return [m for _, _, m in ready]


# Sort keys in C: a key function in Python costs more than the sort itself for a radar frame.
_order = operator.itemgetter(0, 1)
_capture = operator.itemgetter(0)
