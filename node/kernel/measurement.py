"""The measurement contract: what every driver yields and what fusion consumes.

Records are frozen and typed, in the sensor's *own* frame: applying the mount pose, the node
position and time offsets is the fusion core's job (it owns calibration), so a driver never needs
to know where it is mounted and a recording stays valid after a re-calibration.

Times: `t_capture` is UTC seconds (float) on the pipeline clock, the best estimate of when the
sensor observed the quantity; `t_receive` is the monotonic time at which the driver got the bytes.
Angles are radians. The sensor frame is x right, y forward (boresight), z up; azimuth is measured
from boresight towards +x (clockwise seen from above, like a compass) and elevation up from the
x-y plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Measurement:
    sensor_id: str
    t_capture: float
    t_receive: float


@dataclass(frozen=True, slots=True)
class RadarDetection(Measurement):
    """One candidate object seen by a radar (a cluster of points, or a radar's own plot), in
    spherical sensor coordinates.

    `radial_mps` (range-rate, positive = moving away from the sensor) and its sigma are None for a
    radar that does not measure it (3-D radars, plot extractors): fusion then uses a range,
    azimuth and elevation model for that detection. A NaN there counts as absent too, so a radar
    that fills the field with NaN never poisons a track; a NaN in range or angles drops the
    detection (counted by fusion as `invalid`).
    """

    range_m: float
    az_rad: float
    el_rad: float
    radial_mps: float | None  # positive = moving away from the sensor; None: not measured
    sigma_range_m: float
    sigma_az_rad: float
    sigma_el_rad: float
    sigma_radial_mps: float | None  # None with `radial_mps`
    snr_db: float
    n_points: int = 1
    extent_m: float = 0.0


@dataclass(frozen=True, slots=True)
class EmptyRadarScan(Measurement):
    """A radar frame that held no detection: the radar looked at its whole coverage and saw
    nothing there. Evidence of absence, which a frame's missing detections cannot carry by
    themselves: without it a quiet sky (no clutter to make frames non-empty) would charge no
    misses, so a target that vanished would coast on until its timeout and the radar's detection
    probability would be learnt from the frames that saw something only. Drivers emit one per
    such frame; fusion counts it as a scan with no plots."""


@dataclass(frozen=True, slots=True)
class AcousticBearing(Measurement):
    az_rad: float
    el_rad: float
    sigma_az_rad: float
    sigma_el_rad: float
    drone_likelihood: float
    level_db: float  # dB re full scale of the beamformed signal in the DoA band (uncalibrated mics)
    f0_hz: float | None = None
    snr_db: float | None = None  # coherent-to-incoherent ratio at the DoA peak


@dataclass(frozen=True, slots=True)
class RemoteIdReport(Measurement):
    """A drone's own broadcast (ASTM F3411): geodetic, so it needs no mount pose."""

    uas_id: str
    lat: float | None = None
    lon: float | None = None
    alt_geo_m: float | None = None
    height_m: float | None = None
    vel_enu_mps: tuple[float, float, float] | None = None
    h_accuracy_m: float | None = None
    v_accuracy_m: float | None = None
    speed_accuracy_mps: float | None = None
    ua_type: str | None = None
    operator_id: str | None = None
    operator_lat: float | None = None
    operator_lon: float | None = None
    rssi_dbm: float | None = None
    carrier: str | None = None
    mac: str | None = None
    # Identity: `uas_id` is the best ID known (serial > CAA registration > session/UUID > MAC) and
    # `id_type` says which; every ID the drone sent is kept so fusion can match any of them.
    id_type: str | None = None
    serial_number: str | None = None
    registration_id: str | None = None
    session_id: str | None = None
    self_id: str | None = None
    status: str | None = None
    # Kinematics as broadcast (vel_enu_mps needs all three of speed, direction and vertical speed).
    speed_h_mps: float | None = None
    speed_v_mps: float | None = None
    heading_deg: float | None = None
    height_type: str | None = None
    alt_baro_m: float | None = None
    baro_accuracy_m: float | None = None
    time_utc: float | None = None
    """The drone's own UTC time of the position (Location timestamp placed in the current hour)."""
    operator_alt_m: float | None = None
    operator_location_type: str | None = None
    source: str = "odid"
    """`odid` (decoded here from raw messages) or `drone-mesh-mapper` (relayed, rounded fields)."""


@dataclass(frozen=True, slots=True)
class RfPresence(Measurement):
    """An emitter heard on a band/channel; geometry only when a bearing is known."""

    band: str
    channel: int
    freq_mhz: float
    rssi_dbm: float
    snr_db: float
    bearing_rad: float | None = None
    sigma_bearing_rad: float | None = None
    aliases: tuple[str, ...] = ()
    """Other channel labels ("R7") the receiver cannot tell from this one (within a few MHz)."""


@dataclass(frozen=True, slots=True)
class GpsFix(Measurement):
    """The node's own position and time from its GNSS receiver (WGS84)."""

    lat: float
    lon: float
    alt_msl_m: float | None
    geoid_sep_m: float | None
    quality: int
    num_sats: int | None = None
    hdop: float | None = None

    @property
    def alt_hae_m(self) -> float | None:
        """Height above the WGS84 ellipsoid, which is what ENU conversion needs."""
        if self.alt_msl_m is None:
            return None
        return self.alt_msl_m + (self.geoid_sep_m or 0.0)


class SensorState(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """Something a technician should know about a sensor, flowing beside the data."""

    sensor_id: str
    t: float
    state: SensorState
    message: str
    counters: dict[str, int] = field(default_factory=dict)


AnyMeasurement = RadarDetection | EmptyRadarScan | AcousticBearing | RemoteIdReport | RfPresence | GpsFix


def saw_something(m: AnyMeasurement) -> bool:
    """Whether `m` measured something: every kind but an `EmptyRadarScan`, a look that saw nothing.
    Counts of measurements (driver health's rates, doctor, `calibrate capture`, fusion's counters)
    count only these; an empty look counts as a scan."""
    return not isinstance(m, EmptyRadarScan)


NODE_STAMPED = (RadarDetection, EmptyRadarScan, AcousticBearing, RfPresence)
"""Kinds whose capture time is taken on the node's clock, at or before their arrival: none of them
can have been captured after the node's `now` (GPS fixes carry the satellites' time and Remote ID
reports the aircraft's, either of which may run ahead of a node clock that is wrong)."""

REMOTE_ID_SKEW_S = 30.0
"""How far a `RemoteIdReport`'s capture time may lie from the node's clock: its driver resolves the
aircraft's time stamp (seconds past the hour) to the hour nearest the node's time and refuses more
than this between them."""
