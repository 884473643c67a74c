"""What one core step produces, typed: track reports, zone alert events and the node's position.

Fusion and the core fill these in SI units with full precision; they carry no wire identifiers and
no rounding. `cuas_node.publish.wire` is the one place that turns them into the JSON documents of
docs/mqtt.md (track id `<session>.<number>`, alert ids, rounding, envelopes), so the outputs (MQTT,
replay's JSON lines, and any later standard output) all say the same thing, and zones, evaluation
and tests work on numbers instead of parsing strings back.
"""

from __future__ import annotations

from dataclasses import dataclass

Vector3 = tuple[float, float, float]
Matrix3 = tuple[Vector3, Vector3, Vector3]


@dataclass(frozen=True, slots=True)
class ClassSummary:
    """A track's class posterior: the most probable label, its probability, all probabilities (in
    the fusion's class order) and which kinds of evidence contributed."""

    label: str
    confidence: float
    probabilities: tuple[tuple[str, float], ...]
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RemoteIdBinding:
    """The Remote ID identity bound to a track and how far the physical sensors believe it.

    `consistency`: `consistent` (a physical sensor supports the track and the claim agrees),
    `unconfirmed` (nothing physical supports it) or `inconsistent` (a physical track moves like the
    broadcaster but the claimed position is off: spoofing or broken GNSS)."""

    uas_id: str
    consistency: str
    last_seen: float
    reported_lat: float
    reported_lon: float
    reported_alt_m: float
    offset_m: float
    in_coverage: bool
    id_type: str | None = None
    ua_type: str | None = None
    operator_id: str | None = None
    serial_number: str | None = None
    registration_id: str | None = None
    operator_lat: float | None = None
    operator_lon: float | None = None
    carrier: str | None = None
    rssi_dbm: float | None = None


@dataclass(frozen=True, slots=True)
class TrackReport:
    """One track as the outputs see it. `number` is unique within one run of the node (the wire
    id adds the session); positions are WGS84 (altitude above the ellipsoid) and local ENU metres
    from the fusion frame's origin; `status` is tentative, confirmed, coasting or deleted."""

    number: int
    status: str
    t: float
    lat: float
    lon: float
    alt_m: float
    enu_m: Vector3
    vel_enu_mps: Vector3
    pos_cov_enu_m2: Matrix3
    classification: ClassSummary
    sensors: tuple[str, ...]
    bearing_only: bool = False
    remote_id: RemoteIdBinding | None = None

    @property
    def live(self) -> bool:
        """Confirmed or coasting: what a consumer displays and what zones act on."""
        return self.status in ("confirmed", "coasting")


@dataclass(frozen=True, slots=True)
class AlertAck:
    """An operator's acknowledgement of an alert (the `alert-ack` command)."""

    by: str
    t: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class AlertKey:
    """Identifies one alert: a track in a zone, numbered in the order alerts were raised."""

    track_number: int
    zone_id: str
    serial: int


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One step of an alert's lifecycle: `new` when a track enters a zone, `updated` while it stays,
    `cleared` when it leaves, is deleted, changes class or the zone is removed. `track` is the
    report that caused the event (None when the track is already gone)."""

    key: AlertKey
    state: str
    t: float
    since: float
    zone_level: str
    track: TrackReport | None
    ack: AlertAck | None = None
    evidence: str = "physical"  # or "remote_id_only": the track is only a Remote ID claim


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS84 point, altitude above the ellipsoid (e.g. the origin of the local ENU frame)."""

    lat: float
    lon: float
    alt_m: float


@dataclass(frozen=True, slots=True)
class NodePosition:
    """Where the node stands: WGS84 with altitude above the ellipsoid; `source` is gps or config;
    `accuracy_m` the 1-sigma horizontal uncertainty when known (GPS: from the fix's HDOP)."""

    lat: float
    lon: float
    alt_m: float
    source: str
    accuracy_m: float | None = None
