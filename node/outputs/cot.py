"""Cursor-on-Target events from the node's typed track reports (docs/outputs.md).

Sans-IO: `CotCodec` turns reports into CoT XML events and keeps the per-track state that the
standard needs (which uids were sent, when each was last sent for the rate limit); the transport is
`cot_link`. One event per confirmed or coasting track update (at most `track_rate_hz` per track;
a status change goes at once), uid `<prefix>.<node id>.<track id>` (the track id of the MQTT
contract, so both outputs name a track alike), a second event for the Remote ID operator, the node
itself as a sensor marker, and a deletion as an event that is already stale.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cuas_node.kernel.reports import NodePosition, TrackReport
from cuas_node.outputs import cot_map
from cuas_node.outputs.worker import Item, PositionItem, TracksItem
from cuas_node.publish import wire


@dataclass(frozen=True, slots=True)
class CotSettings:
    node_id: str
    session: int
    uid_prefix: str = "cuas"
    affiliation: str = "u"
    track_rate_hz: float = 1.0
    coast_s: float = 3.0  # the tracker's delete_after_s: how long a silent track lives on
    node_marker_interval_s: float = 30.0
    sensor_kinds: Mapping[str, str] | None = None  # sensor id -> kind, for `how`


def cot_time(t: float) -> str:
    """Epoch seconds → `2026-12-03T08:49:00.123Z` (xs:dateTime, UTC, milliseconds)."""
    stamp = datetime.fromtimestamp(t, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _num(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return "0" if text.strip("-0.") == "" else text


def horizontal_sigma_m(cov: tuple[tuple[float, float, float], ...]) -> float:
    """CoT `ce` (a 1-sigma circle): the larger principal sigma of the east/north covariance, so the
    circle covers the 1-sigma ellipse whichever way it points."""
    a, b, d = cov[0][0], cov[0][1], cov[1][1]
    half_trace, det = (a + d) / 2.0, a * d - b * b
    largest = half_trace + math.sqrt(max(half_trace * half_trace - det, 0.0))
    return math.sqrt(max(largest, 0.0))


def course_speed(vel_enu: tuple[float, float, float]) -> tuple[float, float, float]:
    """(course deg clockwise from true north in [0, 360), ground speed m/s, slope deg)."""
    ve, vn, vu = vel_enu
    speed = math.hypot(ve, vn)
    course = math.degrees(math.atan2(ve, vn)) % 360.0
    if course >= 359.95:  # rounding to one decimal must stay below 360 (the schema's bound)
        course = 0.0
    slope = math.degrees(math.atan2(vu, speed)) if speed > 0 or vu != 0 else 0.0
    return course, speed, slope


class CotCodec:
    """The output thread's CoT mapper; `encode` returns the XML frames to send for one item."""

    def __init__(self, settings: CotSettings) -> None:
        self.s = settings
        self._last_sent: dict[int, tuple[float, str]] = {}  # track number -> (t, status)
        self._operators: set[int] = set()  # tracks whose operator event was sent
        self._position: NodePosition | None = None
        self._marker_due = -math.inf

    # -- uids ------------------------------------------------------------------------------

    def track_uid(self, number: int) -> str:
        return f"{self.s.uid_prefix}.{self.s.node_id}.{wire.track_id(self.s.session, number)}"

    def operator_uid(self, number: int) -> str:
        return self.track_uid(number) + ".operator"

    def node_uid(self) -> str:
        return f"{self.s.uid_prefix}.{self.s.node_id}"

    # -- the worker's calls ----------------------------------------------------------------

    def on_connect(self, now: float) -> list[bytes]:
        """A new connection: the node marker at once (a TAK server shows the sensor first); the
        next update of every track is sent whatever the rate limit (the peer may be new)."""
        self._last_sent = {n: (-math.inf, status) for n, (_, status) in self._last_sent.items()}
        self._marker_due = -math.inf
        return self.periodic(now)

    def periodic(self, now: float) -> list[bytes]:
        # A track whose deletion never came (dropped from a full queue) is forgotten once it is
        # long stale at every client, so this state cannot grow without bound.
        forget = now - self.s.coast_s - 60.0
        for number in [n for n, (t, _) in self._last_sent.items() if t < forget]:
            del self._last_sent[number]
            self._operators.discard(number)
        if self._position is None or now < self._marker_due:
            return []
        self._marker_due = now + self.s.node_marker_interval_s
        return [self.node_event(self._position, now)]

    def on_stop(self, now: float) -> list[bytes]:
        """CoT has no goodbye: each event's `stale` time retires it at the clients by itself."""
        return []

    def encode(self, item: Item, now: float) -> list[bytes]:
        if isinstance(item, PositionItem):
            self._position = item.position
            self._marker_due = -math.inf
            return self.periodic(now)
        assert isinstance(item, TracksItem)
        frames: list[bytes] = []
        for report in item.tracks:
            frames += self.track_events(report, now)
        return frames

    def track_events(self, report: TrackReport, now: float) -> list[bytes]:
        """The events one report causes (none while it is tentative or rate-limited)."""
        number = report.number
        if report.status == "deleted":
            frames: list[bytes] = []
            if self._last_sent.pop(number, None) is not None:
                frames.append(
                    self.deletion_event(report, self.track_uid(number), self.track_type(report), now)
                )
            if number in self._operators:
                self._operators.discard(number)
                operator = cot_map.operator_type(self.track_type(report))
                frames.append(self.deletion_event(report, self.operator_uid(number), operator, now))
            return frames
        if not report.live:
            return []
        last = self._last_sent.get(number)
        if last is not None and last[1] == report.status and report.t - last[0] < 1.0 / self.s.track_rate_hz:
            return []
        self._last_sent[number] = (report.t, report.status)
        frames = [self.track_event(report)]
        rid = report.remote_id
        if rid is not None and rid.operator_lat is not None and rid.operator_lon is not None:
            self._operators.add(number)
            frames.append(self.operator_event(report))
        return frames

    # -- events ----------------------------------------------------------------------------

    def _event(self, uid: str, type_: str, how: str, t: float, stale: float) -> ET.Element:
        return ET.Element(
            "event",
            {
                "version": "2.0",
                "uid": uid,
                "type": type_,
                "how": how,
                "time": cot_time(t),
                "start": cot_time(t),
                "stale": cot_time(stale),
            },
        )

    @staticmethod
    def _point(event: ET.Element, lat: float, lon: float, hae: float, ce: float, le: float) -> None:
        ET.SubElement(
            event,
            "point",
            {
                "lat": _num(lat, 7),
                "lon": _num(lon, 7),
                "hae": _num(hae, 1),
                "ce": _num(min(ce, cot_map.UNKNOWN_ERROR_M), 1),
                "le": _num(min(le, cot_map.UNKNOWN_ERROR_M), 1),
            },
        )

    def track_type(self, report: TrackReport) -> str:
        return cot_map.event_type(report.classification.label, self.s.affiliation)

    def track_event(self, report: TrackReport) -> bytes:
        kinds = tuple((self.s.sensor_kinds or {}).get(s, "") for s in report.sensors)
        stale = report.t + self.s.coast_s + 1.0 / self.s.track_rate_hz
        event = self._event(
            self.track_uid(report.number), self.track_type(report), cot_map.how(kinds), report.t, stale
        )
        cov = report.pos_cov_enu_m2
        self._point(
            event,
            report.lat,
            report.lon,
            report.alt_m,
            horizontal_sigma_m(cov),
            math.sqrt(max(cov[2][2], 0.0)),
        )
        detail = ET.SubElement(event, "detail")
        ET.SubElement(detail, "contact", {"callsign": self.callsign(report)})
        course, speed, slope = course_speed(report.vel_enu_mps)
        ET.SubElement(
            detail, "track", {"course": _num(course, 1), "speed": _num(speed, 2), "slope": _num(slope, 1)}
        )
        remarks = ET.SubElement(detail, "remarks", {"source": self.node_uid()})
        remarks.text = self.remarks(report)
        return _frame(event)

    def callsign(self, report: TrackReport) -> str:
        rid = report.remote_id
        if rid is not None:
            return f"UAS {rid.uas_id}"
        return f"{self.s.node_id} T{report.number}"

    def remarks(self, report: TrackReport) -> str:
        c = report.classification
        parts = [f"{c.label} {c.confidence:.0%} ({report.status})"]
        others = [f"{name} {p:.0%}" for name, p in c.probabilities if name != c.label and p >= 0.05]
        if others:
            parts.append("also " + ", ".join(others))
        parts.append("sensors " + ", ".join(report.sensors))
        if report.bearing_only:
            parts.append("bearing only")
        rid = report.remote_id
        if rid is not None:
            ident = f"Remote ID {rid.uas_id} ({rid.consistency})"
            for label, value in (
                ("serial", rid.serial_number),
                ("registration", rid.registration_id),
                ("operator", rid.operator_id),
                ("type", rid.ua_type),
            ):
                if value:
                    ident += f" {label} {value}"
            parts.append(ident)
        return "; ".join(parts)

    def operator_event(self, report: TrackReport) -> bytes:
        rid = report.remote_id
        assert rid is not None and rid.operator_lat is not None and rid.operator_lon is not None
        stale = report.t + self.s.coast_s + 1.0 / self.s.track_rate_hz
        type_ = cot_map.operator_type(self.track_type(report))
        event = self._event(self.operator_uid(report.number), type_, "m-r", report.t, stale)
        # The node's Remote ID binding carries no operator altitude: hae and le are unknown.
        unknown = cot_map.UNKNOWN_ERROR_M  # CoT's "unknown" for hae as for ce/le
        self._point(event, rid.operator_lat, rid.operator_lon, unknown, 10.0, unknown)
        detail = ET.SubElement(event, "detail")
        ET.SubElement(detail, "contact", {"callsign": f"Operator of UAS {rid.uas_id}"})
        remarks = ET.SubElement(detail, "remarks", {"source": self.node_uid()})
        operator = f" (operator id {rid.operator_id})" if rid.operator_id else ""
        remarks.text = (
            f"Remote ID operator position of {rid.uas_id}{operator}, track {self.track_uid(report.number)}"
        )
        return _frame(event)

    def deletion_event(self, report: TrackReport, uid: str, type_: str, now: float) -> bytes:
        """A deletion: the same uid, already stale (stale = time), so every client drops it."""
        t = max(report.t, now)
        event = self._event(uid, type_, "m-a", t, t)
        self._point(
            event, report.lat, report.lon, report.alt_m, cot_map.UNKNOWN_ERROR_M, cot_map.UNKNOWN_ERROR_M
        )
        detail = ET.SubElement(event, "detail")
        remarks = ET.SubElement(detail, "remarks", {"source": self.node_uid()})
        remarks.text = "track deleted"
        return _frame(event)

    def node_event(self, position: NodePosition, now: float) -> bytes:
        """The node as a friendly ground sensor, refreshed every `node_marker_interval_s`."""
        stale = now + 3.0 * self.s.node_marker_interval_s
        how = "m-g" if position.source == "gps" else "m-c"
        event = self._event(self.node_uid(), cot_map.NODE_TYPE, how, now, stale)
        ce = position.accuracy_m if position.accuracy_m is not None else cot_map.UNKNOWN_ERROR_M
        self._point(event, position.lat, position.lon, position.alt_m, ce, cot_map.UNKNOWN_ERROR_M)
        detail = ET.SubElement(event, "detail")
        ET.SubElement(detail, "contact", {"callsign": self.s.node_id})
        remarks = ET.SubElement(detail, "remarks")
        remarks.text = f"cuas-node sensor node {self.s.node_id} (position from {position.source})"
        return _frame(event)


def _frame(event: ET.Element) -> bytes:
    """One event as sent: XML declaration, the event, no trailing newline (TAK servers split the
    stream on `</event>`)."""
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(
        event, encoding="utf-8", xml_declaration=False
    )
