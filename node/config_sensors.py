"""The sensor sections of the node configuration (one model per sensor kind) and the pieces they
share with the rest of the config: a sensor's mount pose and a WGS84 position.

Kept apart from node/config.py, which assembles them with the other sections and owns loading and
error reporting, so that adding a sensor kind touches one short module.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from cuas_node.kernel.pose import Pose

IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

_T = TypeVar("_T")


def _int_from_digits(value: Any) -> Any:
    """`"1"` → `1`: pydantic matches an int `Literal` only against ints, never their digits."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        return int(value)
    return value


# A choice among ints (`IntLiteral[Literal[0, 1, 2]]`) that also accepts its digits, as every
# `CUAS_*` environment override arrives: a string. Any other input is left for the `Literal` to
# reject with its own message ("Input should be 0, 1 or 2").
IntLiteral = Annotated[_T, BeforeValidator(_int_from_digits)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Position(Section):
    """A WGS84 position: latitude/longitude in degrees, altitude above the ellipsoid in metres."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    alt_m: float = Field(default=0.0, ge=-500, le=10000)


class MountPose(Section):
    """How a sensor sits on the node: heading of its boresight, tilt, roll, and lever arm.

    yaw_deg is the compass bearing of boresight (clockwise from true north); pitch_deg tilts
    boresight up; roll_deg turns the sensor's right side down. offset_m is the sensor's position
    from the node's reference point in metres [east, north, up].
    """

    yaw_deg: float = Field(default=0.0, ge=-360, le=360)
    pitch_deg: float = Field(default=0.0, ge=-90, le=90)
    roll_deg: float = Field(default=0.0, ge=-180, le=180)
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def pose(self) -> Pose:
        """The rotation and lever arm this mount describes (kernel.pose has the conventions)."""
        return Pose.from_angles(self.yaw_deg, self.pitch_deg, self.roll_deg, self.offset_m)


class _SensorBase(Section):
    id: str = Field(pattern=IDENT_PATTERN)
    enabled: bool = True
    mount: MountPose = MountPose()
    time_offset_s: float = Field(default=0.0, ge=-10, le=10)


class NmeaSensor(_SensorBase):
    kind: Literal["nmea"]
    port: str
    baudrate: int = Field(default=9600, gt=0)


REFLECTORS_FILE = "the site's fixed reflectors as this radar sees them (calibrate radar-reflectors)"


class TiMmwaveSensor(_SensorBase):
    kind: Literal["ti-mmwave"]
    port: str = Field(description="data UART (921600 baud)")
    baudrate: int = Field(default=921600, gt=0)
    config_port: str | None = Field(default=None, description="CLI UART (115200 baud)")
    config_baudrate: int = Field(default=115200, gt=0)
    cfg_file: Path | None = None
    model: Literal["iwr6843", "xwr1642"] = Field(
        default="iwr6843", description="radar part: sets angular resolution and whether elevation is measured"
    )
    doppler_clutter_band_mps: float = Field(default=0.1, ge=0, le=5)
    static_map_file: Path | None = Field(default=None, description="learned static clutter map (calibration)")
    range_bias_m: float = Field(
        default=0.0, ge=-10, le=10, description="subtracted from ranges (calibration)"
    )
    static_map_learn_frames: int = Field(
        default=0, ge=0, description="learn a clutter map over this many frames"
    )
    max_range_m: float = Field(default=150.0, gt=0)
    fov_az_deg: float = Field(
        default=60.0, gt=0, le=180, description="half-width of the azimuth field of view"
    )
    fov_el_deg: float = Field(
        default=45.0, gt=0, le=90, description="half-width of the elevation field of view"
    )
    reflectors_file: Path | None = Field(default=None, description=REFLECTORS_FILE)


class GenericRadarSensor(_SensorBase):
    """A radar described by what it measures, not by a protocol: the sensor that detections fed
    to `cuas-node track` (and a future network radar input) refer to. Its figures are what fusion
    is told of it (`fusion.params.RadarSensor`), so the tracker can derive its thresholds from
    them; each detection still carries its own sigmas."""

    kind: Literal["radar"]
    max_range_m: float = Field(ge=1, description="instrumented range")
    min_range_m: float = Field(default=0.0, ge=0, description="blind zone: nothing is seen closer")
    fov_az_deg: float = Field(
        default=60.0, gt=0, le=180, description="half-width of the azimuth field of view"
    )
    fov_el_deg: float = Field(
        default=45.0, gt=0, le=90, description="half-width of the elevation field of view"
    )
    range_sigma_m: float = Field(gt=0, description="1-sigma range error of a detection")
    az_sigma_deg: float = Field(gt=0, le=90, description="1-sigma azimuth error of a detection")
    el_sigma_deg: float = Field(gt=0, le=90, description="1-sigma elevation error of a detection")
    range_rate: bool = Field(default=False, description="whether it measures range-rate (Doppler)")
    range_rate_sigma_mps: float | None = Field(
        default=None, gt=0, description="1-sigma range-rate error; required with range_rate"
    )
    unambiguous_range_rate_mps: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description=(
            "the radial speed beyond which its range-rate wraps (±, the Doppler span); absent: it"
            " resolves the ambiguity, so a detection's range-rate is the target's"
        ),
    )
    rate_hz: float = Field(gt=0, le=1000, description="scans (looks at the whole coverage) per second")
    false_alarms_per_scan: float = Field(
        default=2.0,
        ge=0,
        le=1e5,
        allow_inf_nan=False,
        description=(
            "expected clutter detections per scan (the tracker's starting clutter density and, as"
            " configured, its confirmation bar)"
        ),
    )
    splits_objects: bool = Field(
        default=False,
        description=(
            "whether one object may yield several detections in a scan (a point-cloud clusterer);"
            " false for a plot extractor, which reports each object it resolves once a scan"
        ),
    )
    sweeps: bool = Field(
        default=False,
        description=(
            "a scanning radar: its beam sweeps the azimuth sector once every 1/rate_hz s and each"
            " plot is stamped when the beam passed it; false: a scan's plots share one t_capture"
        ),
    )

    reflectors_file: Path | None = Field(default=None, description=REFLECTORS_FILE)

    @model_validator(mode="after")
    def _consistent(self) -> GenericRadarSensor:
        if self.min_range_m >= self.max_range_m:
            raise ValueError("min_range_m must be below max_range_m")
        if self.range_rate and self.range_rate_sigma_mps is None:
            raise ValueError("range_rate = true needs range_rate_sigma_mps (its 1-sigma error)")
        return self


class RemoteIdSensor(_SensorBase):
    kind: Literal["remoteid"]
    port: str
    baudrate: int = Field(default=115200, gt=0)
    format: Literal["odid-lines", "drone-mesh-mapper"] = "odid-lines"


class FpvReceiver(Section):
    """One RX5808 + antenna read on its own MCP3008 channel; several, on directional antennas,
    give a bearing from their RSSI ratio."""

    adc_channel: int = Field(ge=0, le=7)
    boresight_deg: float = Field(default=0.0, ge=-360, le=360, description="relative to the sensor mount")
    beamwidth_deg: float | None = Field(default=None, gt=0, le=360, description="None: omnidirectional")
    gain_dbi: float = 2.0


class FpvRx5808Sensor(_SensorBase):
    kind: Literal["fpv-rx5808"]
    bus: str = "spi0"
    adc_channel: int = Field(default=0, ge=0, le=7)
    adc_cs_pin: str | None = Field(default=None, description="None: the SPI bus's CE0, driven by the kernel")
    data_pin: str = "D17"
    clock_pin: str = "D27"
    select_pin: str = "D22"
    bands: str = Field(default="ABEFRL", pattern=r"^[ABEFRL]+$")
    exclude: list[str] = Field(
        default_factory=list, description="channels to ignore, e.g. a site's Wi-Fi: ['F4']"
    )
    settle_ms: float = Field(default=30.0, ge=5, le=200)
    enter_db: float = Field(default=10.0, gt=0)
    exit_db: float = Field(default=6.0, gt=0)
    confirm_sweeps: int = Field(default=2, ge=1, le=10)
    rssi_v_low: float = 0.5
    rssi_dbm_low: float = -90.0
    rssi_v_high: float = 1.1
    rssi_dbm_high: float = -40.0
    receivers: list[FpvReceiver] = Field(
        default_factory=list, description="empty: one omni receiver on adc_channel"
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> FpvRx5808Sensor:
        if self.exit_db > self.enter_db:
            raise ValueError("exit_db must not exceed enter_db (hysteresis)")
        return self


class AcousticArraySensor(_SensorBase):
    kind: Literal["acoustic-array"]
    port: str
    baudrate: int = Field(default=2000000, gt=0)
    geometry: Literal["respeaker-4", "respeaker-6", "minidsp-uma8"] | list[tuple[float, float, float]] = (
        Field(
            default="respeaker-4",
            description="a preset, or explicit microphone positions [x, y, z] in metres",
        )
    )
    channel_map: list[int] | None = Field(default=None, description="wire channel of each microphone")
    detection_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="explicit threshold; default: the background's or the shipped one",
    )
    background_file: Path | None = Field(
        default=None, description="site background from `cuas-node calibrate acoustic-background`"
    )
    false_alarms_per_hour: float = Field(default=1.0, gt=0, description="target rate with a background_file")
    band_hz: tuple[float, float] = (100.0, 4000.0)
    max_sources: int = Field(default=3, ge=1, le=8)
    sensitivity_tolerance_db: float = Field(
        default=1.0,
        ge=0,
        le=6,
        description="the microphones' sensitivity tolerance, ± dB (datasheet); bounds near-field evidence",
    )

    @model_validator(mode="after")
    def _band(self) -> AcousticArraySensor:
        if not 0 < self.band_hz[0] < self.band_hz[1]:
            raise ValueError("band_hz must be [low, high] with 0 < low < high")
        return self


SensorConfig = Annotated[
    NmeaSensor | TiMmwaveSensor | GenericRadarSensor | RemoteIdSensor | FpvRx5808Sensor | AcousticArraySensor,
    Field(discriminator="kind"),
]
