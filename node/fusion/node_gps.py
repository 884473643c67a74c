"""The node's own position from its GPS receiver: the antenna's fixes moved to the node's reference
point and averaged over the first few, so that a static node pins a stable origin (`FusionEngine`
pins the local frame once, at the first average: moving it would shift every live track)."""

from __future__ import annotations

import numpy as np

from cuas_node.fusion.params import PositionReceiver
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import GpsFix
from cuas_node.kernel.reports import NodePosition

_GPS_AVERAGE = 10  # fixes averaged for the node's position; a static node then keeps a stable origin


class NodeGps:
    def __init__(self, receivers: dict[str, PositionReceiver]) -> None:
        self.receivers = receivers
        self._fixes: list[tuple[float, float, float]] = []
        self.position: tuple[float, float, float] | None = None  # lat, lon, alt (HAE)
        self.accuracy_m: float | None = None

    def add(self, fix: GpsFix) -> None:
        """Take a fix: one without a solution or a height is no position."""
        alt = fix.alt_hae_m
        if fix.quality <= 0 or alt is None:
            return
        receiver = self.receivers.get(fix.sensor_id)
        lat, lon = fix.lat, fix.lon
        if receiver is not None and any(receiver.antenna_offset_m):
            # The fix is the antenna's; the node's reference point is its mount offset away.
            back = -np.asarray(receiver.antenna_offset_m, dtype=np.float64)
            la, lo, al = LocalFrame(lat, lon, alt).to_geodetic(back)
            lat, lon, alt = float(la), float(lo), float(al)
        if fix.hdop is not None and receiver is not None:
            self.accuracy_m = fix.hdop * receiver.uere_m
        if len(self._fixes) < _GPS_AVERAGE:
            self._fixes.append((lat, lon, alt))
            lat, lon, alt_m = (float(v) for v in np.mean(np.array(self._fixes), axis=0))
            self.position = (lat, lon, alt_m)

    def reported(self) -> NodePosition | None:
        """The position `info` reports, while there is one."""
        if self.position is None:
            return None
        return NodePosition(*self.position, source="gps", accuracy_m=self.accuracy_m)
