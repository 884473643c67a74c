"""Zones and the alert lifecycle: a live track of a watched class inside a protected volume.

A zone is a polygon (WGS84 vertices) with a floor and a ceiling in metres above the node's
altitude, and a level. Each (track, zone) pair has one alert: `new` when the track enters,
`updated` every `update_interval_s` while it stays, `cleared` when it is deleted or the zone is
removed (at once), or when it has been outside the zone or outside the classes the zone cares
about for `clear_after_s`. That hold is hysteresis: a track's label flickers while its class is
uncertain (a hovering drone looks like a bird for a few scans) and a track on a zone's edge wanders
in and out of it with its noise; without it the operator would see the alert clear and come back
under a new id, its acknowledgement lost. An operator's acknowledgement rides on every later event
of that alert and is forgotten once it is cleared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.reports import AlertAck, AlertEvent, AlertKey, TrackReport

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """A protected volume as configured (`[[zones]]`): [lat, lon] vertices, floor and ceiling in
    metres above the node, the alert level and the track classes that raise an alert."""

    id: str
    level: str
    polygon: tuple[tuple[float, float], ...]
    floor_m: float
    ceiling_m: float
    classes: frozenset[str]


@dataclass(frozen=True)
class Zone:
    """A zone in the local frame: polygon in east/north metres."""

    spec: ZoneSpec
    polygon_en: FloatArray  # (V, 2)

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
        return np.asarray(inside & (height >= self.spec.floor_m) & (height <= self.spec.ceiling_m))


PHYSICAL = "physical"
REMOTE_ID_ONLY = "remote_id_only"


def evidence(track: TrackReport) -> str:
    """What an alert rests on: a physical sensor's track, or only a Remote ID claim (a track no
    physical sensor supports: its binding is `unconfirmed`)."""
    rid = track.remote_id
    return REMOTE_ID_ONLY if rid is not None and rid.consistency == "unconfirmed" else PHYSICAL


def build_zones(specs: Sequence[ZoneSpec], frame: LocalFrame) -> list[Zone]:
    zones = []
    for z in specs:
        pts = np.array(z.polygon, dtype=np.float64)
        enu = frame.to_enu(pts[:, 0], pts[:, 1], np.full(pts.shape[0], frame.alt_m))
        zones.append(Zone(z, enu[:, :2]))
    return zones


@dataclass
class _Active:
    key: AlertKey
    since: float
    last_sent: float
    away_since: float | None = None  # when the track was first seen outside the zone or its classes


class AlertMonitor:
    """The alerts of a set of zones, evaluated on each published set of track reports."""

    def __init__(
        self,
        zones: list[Zone],
        update_interval_s: float = 5.0,
        rid_only_per_min: float = 6.0,
        clear_after_s: float = 2.0,
    ) -> None:
        self.zones = zones
        self.update_interval_s = update_interval_s
        self.clear_after_s = clear_after_s
        self.active: dict[tuple[int, str], _Active] = {}
        self.acks: dict[AlertKey, AlertAck] = {}
        self._next = 1
        # New alerts on tracks only Remote ID supports: a token bucket (a minute's worth), since
        # a spoofer can place claims in every zone at will; the rest wait and are counted.
        self.rid_only_per_min = rid_only_per_min
        self._tokens = rid_only_per_min
        self._t_tokens: float | None = None
        self.suppressed = 0

    def evaluate(self, t: float, tracks: Sequence[TrackReport]) -> list[AlertEvent]:
        """Alert events caused by this set of published track reports."""
        if not self.zones:
            return []
        live = [tr for tr in tracks if tr.live]
        by_number = {tr.number: tr for tr in tracks}
        enu = np.array([tr.enu_m for tr in live], dtype=np.float64).reshape(-1, 3)
        inside: set[tuple[int, str]] = set()
        for zone in self.zones:
            hits = zone.contains(enu)
            for tr, hit in zip(live, hits, strict=True):
                if hit and tr.classification.label in zone.spec.classes:
                    inside.add((tr.number, zone.spec.id))
        events: list[AlertEvent] = []
        zones = {z.spec.id: z for z in self.zones}
        for pair in sorted(inside):
            number, zone_id = pair
            state = self.active.get(pair)
            if state is None:
                if evidence(by_number[number]) == REMOTE_ID_ONLY and not self._take_token(t):
                    self.suppressed += 1
                    continue
                state = self.active[pair] = _Active(AlertKey(number, zone_id, self._next), t, t)
                self._next += 1
                events.append(self._event("new", state, zones[zone_id].spec.level, by_number[number], t))
            else:
                state.away_since = None
                if t - state.last_sent >= self.update_interval_s:
                    state.last_sent = t
                    events.append(
                        self._event("updated", state, zones[zone_id].spec.level, by_number[number], t)
                    )
        for pair in sorted(set(self.active) - inside):
            state = self.active[pair]
            track = by_number.get(pair[0])
            if track is not None and track.status == "deleted":
                track = None  # gone: cleared at once, and `track` is absent
            elif track is not None:
                state.away_since = t if state.away_since is None else state.away_since
                if t - state.away_since < self.clear_after_s:
                    continue  # out of the zone or its classes only briefly: held (module docstring)
            del self.active[pair]
            events.append(self._event("cleared", state, zones[pair[1]].spec.level, track, t))
        return events

    def _take_token(self, t: float) -> bool:
        if self._t_tokens is not None:
            refill = (t - self._t_tokens) * self.rid_only_per_min / 60.0
            self._tokens = min(self.rid_only_per_min, self._tokens + max(refill, 0.0))
        self._t_tokens = t
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def replace(self, specs: Sequence[ZoneSpec], frame: LocalFrame, t: float) -> list[AlertEvent]:
        """Swap the zones. Alerts in zones that remain keep their key; alerts in removed zones are
        cleared now (the returned events)."""
        keep = {z.id for z in specs}
        levels = {z.spec.id: z.spec.level for z in self.zones}
        events = []
        for pair in sorted(self.active):
            if pair[1] not in keep:
                events.append(self._event("cleared", self.active.pop(pair), levels[pair[1]], None, t))
        self.zones = build_zones(specs, frame)
        return events

    def _event(
        self, kind: str, state: _Active, level: str, track: TrackReport | None, t: float
    ) -> AlertEvent:
        ack = self.acks.get(state.key)
        if kind == "cleared":
            self.acks.pop(state.key, None)
        basis = evidence(track) if track is not None else PHYSICAL
        return AlertEvent(state.key, kind, t, state.since, level, track, ack, basis)

    def acknowledge(self, key: AlertKey, ack: AlertAck) -> bool:
        """Record an operator's acknowledgement of an active alert; False if it is not active."""
        if self.active.get((key.track_number, key.zone_id), None) is None:
            return False
        if self.active[(key.track_number, key.zone_id)].key != key:
            return False
        self.acks[key] = ack
        return True

    def active_keys(self) -> list[AlertKey]:
        return [state.key for state in self.active.values()]

    @property
    def critical_active(self) -> bool:
        levels = {z.spec.id: z.spec.level for z in self.zones}
        return any(levels.get(zone_id) == "critical" for _, zone_id in self.active)
