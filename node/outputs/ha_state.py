"""The Home Assistant state document: what the node's HA entities show, built from the very
documents the node publishes (`tracks`, `alerts`, `health`, `info`; docs/mqtt.md).

Why from the published documents: they are the node's public contract, so this module depends
on nothing of how tracks are made, and HA shows exactly what every other MQTT consumer sees.
Pure (no broker, no thread): `take` each document in publishing order, `document()` the state.

- `drones`: confirmed tracks (not coasting or tentative) whose class label is one of
  `drone_classes` in the latest `tracks` message.
- `nearest_m`, `nearest_bearing_deg`, `nearest_track`: the nearest of those, slant range in
  metres from the node's position (`info.position`, else the ENU origin) and bearing in degrees
  clockwise from true north; absent when no drone is counted.
- `alert`: true while any zone alert is active: `new` or `updated`, until its `cleared`, or
  until it has had no event for `alert_expiry_s` (a safety net: the node updates an active alert
  every `fusion.alert_update_s`); `alert_detail` names the zones, the highest level and the count.
- `sensors`: each sensor's `state` from the latest `health` (empty before the first one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pymap3d

LEVELS = ("warning", "critical")  # zone levels, lowest first (docs/config.md, [[zones]])


@dataclass
class _Alert:
    zone: str
    level: str
    last_t: float


@dataclass
class HaState:
    drone_classes: frozenset[str]
    alert_expiry_s: float
    _origin: tuple[float, float, float] | None = None
    _node_enu: tuple[float, float, float] = (0.0, 0.0, 0.0)
    _drones: int = 0
    _nearest: tuple[float, float, str] | None = None
    _alerts: dict[str, _Alert] = field(default_factory=dict)
    _sensors: dict[str, str] = field(default_factory=dict)

    def take(self, name: str, doc: dict[str, Any], now: float) -> None:
        """One published document (`name` as `MqttPublisher.add_listener` tells it)."""
        if name == "tracks":
            self._take_tracks(doc.get("tracks", []))
        elif name == "alerts":
            self._take_alert(doc, now)
        elif name == "health":
            self._sensors = {
                str(s["id"]): str(s["state"]) for s in doc.get("sensors", []) if "id" in s and "state" in s
            }
        elif name == "info":
            self._take_info(doc)

    def _take_info(self, doc: dict[str, Any]) -> None:
        origin, position = doc.get("enu_origin"), doc.get("position")
        if origin is not None:
            self._origin = (float(origin["lat"]), float(origin["lon"]), float(origin["alt_m"]))
        if self._origin is not None and position is not None:
            e, n, u = pymap3d.geodetic2enu(
                float(position["lat"]), float(position["lon"]), float(position["alt_m"]), *self._origin
            )
            self._node_enu = (float(e), float(n), float(u))

    def _take_tracks(self, tracks: Sequence[dict[str, Any]]) -> None:
        drones = [
            t
            for t in tracks
            if t.get("status") == "confirmed" and t.get("class", {}).get("label") in self.drone_classes
        ]
        self._drones = len(drones)
        nearest: tuple[float, float, str] | None = None
        ne, nn, nu = self._node_enu
        for track in drones:
            e, n, u = (float(v) for v in track["enu_m"])
            distance = math.sqrt((e - ne) ** 2 + (n - nn) ** 2 + (u - nu) ** 2)
            if nearest is None or distance < nearest[0]:
                bearing = math.degrees(math.atan2(e - ne, n - nn)) % 360.0
                nearest = (distance, bearing, str(track["id"]))
        self._nearest = nearest

    def _take_alert(self, doc: dict[str, Any], now: float) -> None:
        alert_id = str(doc.get("alert_id", ""))
        if doc.get("state") == "cleared":
            self._alerts.pop(alert_id, None)
        elif doc.get("state") in ("new", "updated"):
            zone = doc.get("zone", {})
            self._alerts[alert_id] = _Alert(str(zone.get("id", "")), str(zone.get("level", "warning")), now)

    def expire(self, now: float) -> bool:
        """Forget alerts without an event for `alert_expiry_s`; True if one went."""
        old = [k for k, a in self._alerts.items() if now - a.last_t > self.alert_expiry_s]
        for key in old:
            del self._alerts[key]
        return bool(old)

    def document(self) -> dict[str, Any]:
        """The state document (docs/schemas/homeassistant-state.schema.json); unknown values absent."""
        doc: dict[str, Any] = {"drones": self._drones}
        if self._nearest is not None:
            distance, bearing, track_id = self._nearest
            doc["nearest_m"] = round(distance)
            doc["nearest_bearing_deg"] = round(bearing) % 360
            doc["nearest_track"] = track_id
        alerts = list(self._alerts.values())
        detail: dict[str, Any] = {"alerts": len(alerts), "zones": sorted({a.zone for a in alerts})}
        if alerts:
            detail["level"] = max(
                (a.level for a in alerts), key=lambda lv: LEVELS.index(lv) if lv in LEVELS else -1
            )
        doc["alert"] = bool(alerts)
        doc["alert_detail"] = detail
        doc["sensors"] = dict(sorted(self._sensors.items()))
        return doc
