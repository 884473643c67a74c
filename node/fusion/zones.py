"""Zones and the alert lifecycle: a confirmed track inside a protected volume raises an alert.

A zone is a polygon (WGS84 vertices) with a floor and a ceiling in metres above the node, and a
level. Each (track, zone) pair has one alert: `new` when the track enters, `updated` every
`update_interval_s` while it stays (with its latest position), `cleared` when it leaves, is
deleted, or stops being of a class the zone cares about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cuas_node.config import ZoneSection
from cuas_node.kernel.geo import LocalFrame

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Zone:
    id: str
    level: str
    polygon_en: FloatArray  # (V, 2) east/north metres
    floor_m: float
    ceiling_m: float
    classes: frozenset[str]

    def contains(self, enu: FloatArray) -> npt.NDArray[np.bool_]:
        """Even-odd ray casting for all points (N,3) against all edges at once."""
        if enu.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        x, y = enu[:, 0:1], enu[:, 1:2]
        a = self.polygon_en
        b = np.roll(a, -1, axis=0)
        ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        straddles = (ay > y) != (by > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = ax + (y - ay) * (bx - ax) / (by - ay)
        inside = np.count_nonzero(straddles & (x < x_cross), axis=1) % 2 == 1
        height = enu[:, 2]
        return np.asarray(inside & (height >= self.floor_m) & (height <= self.ceiling_m))


def build_zones(sections: list[ZoneSection], frame: LocalFrame) -> list[Zone]:
    zones = []
    for z in sections:
        pts = np.array(z.polygon, dtype=np.float64)
        enu = frame.to_enu(pts[:, 0], pts[:, 1], np.full(pts.shape[0], frame.alt_m))
        zones.append(Zone(z.id, z.level, enu[:, :2], z.floor_m, z.ceiling_m, frozenset(z.classes)))
    return zones


@dataclass
class _Active:
    alert_id: str
    since: float
    last_sent: float


class ZoneMonitor:
    def __init__(self, zones: list[Zone], update_interval_s: float = 5.0) -> None:
        self.zones = zones
        self.update_interval_s = update_interval_s
        self.active: dict[tuple[str, str], _Active] = {}
        self._next = 1

    def evaluate(self, t: float, tracks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Alert events (without envelope) caused by this set of published track records."""
        if not self.zones:
            return []
        live = [tr for tr in tracks if tr["status"] in ("confirmed", "coasting")]
        by_id = {tr["id"]: tr for tr in tracks}
        enu = np.array([tr["enu_m"] for tr in live], dtype=np.float64).reshape(-1, 3)
        inside: set[tuple[str, str]] = set()
        for zone in self.zones:
            hits = zone.contains(enu)
            for tr, hit in zip(live, hits, strict=True):
                if hit and tr["class"]["label"] in zone.classes:
                    inside.add((tr["id"], zone.id))
        events: list[dict[str, Any]] = []
        zones = {z.id: z for z in self.zones}
        for key in sorted(inside):
            track_id, zone_id = key
            state = self.active.get(key)
            if state is None:
                state = self.active[key] = _Active(f"{track_id}@{zone_id}#{self._next}", t, t)
                self._next += 1
                events.append(self._event("new", state, zones[zone_id], by_id[track_id], t))
            elif t - state.last_sent >= self.update_interval_s:
                state.last_sent = t
                events.append(self._event("updated", state, zones[zone_id], by_id[track_id], t))
        for key in sorted(set(self.active) - inside):
            state = self.active.pop(key)
            track_id, zone_id = key
            events.append(self._event("cleared", state, zones[zone_id], by_id.get(track_id), t))
        return events

    @staticmethod
    def _event(
        kind: str, state: _Active, zone: Zone, track: dict[str, Any] | None, t: float
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "alert_id": state.alert_id,
            "state": kind,
            "t": round(t, 3),
            "since": round(state.since, 3),
            "zone": {"id": zone.id, "level": zone.level},
        }
        if track is not None:
            event["track"] = {
                k: track[k] for k in ("id", "status", "lat", "lon", "alt_m", "class") if k in track
            }
        return event

    @property
    def critical_active(self) -> bool:
        levels = {z.id: z.level for z in self.zones}
        return any(levels[zone_id] == "critical" for _, zone_id in self.active)
