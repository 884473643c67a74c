"""Scenario files: the node, its simulated sensors and the targets, validated like the node config.

A scenario is TOML. Built-in ones ship in `drivers/sim/scenarios/` and are addressed by name
(`cuas-node sim demo`); any other argument is read as a path.
"""

from __future__ import annotations

import itertools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cuas_node.config import (
    IDENT_PATTERN,
    ConfigError,
    FpvReceiver,
    MountPose,
    Position,
    format_validation_error,
)

TargetKind = Literal["quadcopter", "fixed-wing", "bird", "aircraft"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Waypoint(_Strict):
    t: float = Field(ge=0, description="seconds after the scenario start")
    enu_m: tuple[float, float, float]


class RemoteIdSpec(_Strict):
    """The target broadcasts ASTM F3411 Remote ID. `spoof_offset_m` is added to the position it
    *reports* (not to where it flies): a spoofer, or a broken GNSS."""

    uas_id: str = Field(min_length=1, max_length=20)
    operator_id: str = ""
    operator_enu_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    carriers: tuple[Literal["bt4", "wifi-beacon"], ...] = ("bt4", "wifi-beacon")
    spoof_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)


class FpvVideoSpec(_Strict):
    """The target carries an analog 5.8 GHz video transmitter."""

    freq_mhz: float = Field(ge=5300, le=6100)
    eirp_dbm: float = Field(default=25.0, ge=0, le=40)


class TargetSpec(_Strict):
    """A target flying through waypoints (linear between them); absent before the first, after the last."""

    id: str
    kind: TargetKind
    rcs_m2: float = Field(default=0.01, gt=0)
    waypoints: list[Waypoint] = Field(min_length=2)
    remote_id: RemoteIdSpec | None = None
    fpv: FpvVideoSpec | None = None
    max_accel_mps2: float | None = Field(default=None, gt=0, description="default by kind: quadcopter 4 m/s²")

    @model_validator(mode="after")
    def _ordered(self) -> TargetSpec:
        times = [w.t for w in self.waypoints]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("waypoint times must increase")
        return self


class SimSensorBase(_Strict):
    id: str
    rate_hz: float = Field(gt=0, le=100)
    mount: MountPose = MountPose()


class SimRadarSpec(SimSensorBase):
    kind: Literal["ti-mmwave"]
    max_range_m: float = Field(default=150.0, gt=0)
    fov_az_deg: float = Field(default=60.0, gt=0, le=90)
    fov_el_deg: float = Field(default=40.0, gt=0, le=90)
    range_sigma_m: float = Field(default=0.15, gt=0)
    az_sigma_deg: float = Field(default=1.0, gt=0)
    el_sigma_deg: float = Field(default=2.0, gt=0)
    doppler_sigma_mps: float = Field(default=0.08, gt=0)
    point_spread_m: float = Field(
        default=0.3, ge=0, description="spread of one target's points about its centre"
    )
    p_detect: float = Field(
        default=0.95, ge=0, le=1, description="for a 0.01 m² target at half the max range"
    )
    mean_points_per_target: float = Field(default=2.5, ge=1)
    false_alarms_per_frame: float = Field(default=1.0, ge=0)
    static_clutter_points: int = Field(default=12, ge=0)
    multipath_probability: float = Field(default=0.05, ge=0, le=1)


class SimGpsSpec(SimSensorBase):
    kind: Literal["nmea"]
    sigma_m: float = Field(default=1.5, ge=0)


class SimRemoteIdSpec(SimSensorBase):
    """An ESP32-style receiver speaking the node's line protocol; `rate_hz` is how often it is polled."""

    kind: Literal["remoteid"]
    rate_hz: float = Field(default=10.0, gt=0, le=100)
    range_m: float = Field(default=1500.0, gt=0)


class SimFpvSpec(SimSensorBase):
    """An RX5808 + MCP3008 scanner; the driver paces itself, so `rate_hz` is unused."""

    kind: Literal["fpv-rx5808"]
    rate_hz: float = Field(default=1.0, gt=0)
    noise_floor_dbm: float = -90.0
    receivers: list[FpvReceiver] = Field(
        default_factory=list,
        description="as in the node config: none, one omni receiver; directional ones give a bearing",
    )


class SimAcousticSpec(SimSensorBase):
    """A microphone array streaming framed PCM; `rate_hz` is how often audio blocks are written."""

    kind: Literal["acoustic-array"]
    rate_hz: float = Field(default=10.0, gt=0, le=100)
    geometry: Literal["respeaker-4", "respeaker-6", "minidsp-uma8"] = "respeaker-4"
    sample_rate: int = Field(default=16000, ge=8000, le=96000)
    ambient_db_spl: float = 40.0
    wind_db_spl: float = 45.0


SimSensorSpec = Annotated[
    SimRadarSpec | SimGpsSpec | SimRemoteIdSpec | SimFpvSpec | SimAcousticSpec, Field(discriminator="kind")
]


class ZoneSpec(_Strict):
    """A protected zone, handed to the node as a `[[zones]]` table (docs/config.md) with the
    polygon given here as [east, north] metres from the node instead of [lat, lon]."""

    id: str = Field(pattern=IDENT_PATTERN)
    level: Literal["warning", "critical"] = "warning"
    polygon_enu_m: list[tuple[float, float]] = Field(min_length=3)
    floor_m: float = -100.0
    ceiling_m: float = 1000.0
    classes: tuple[Literal["multirotor", "fixed_wing", "bird", "aircraft", "unknown"], ...] | None = Field(
        default=None, description="labels that raise an alert; None: the node's default"
    )

    @model_validator(mode="after")
    def _heights(self) -> ZoneSpec:
        if self.floor_m >= self.ceiling_m:
            raise ValueError("floor_m must be below ceiling_m")
        return self


class NodeSpec(_Strict):
    id: str = "sim-node"
    position: Position


class Scenario(_Strict):
    name: str
    description: str = ""
    duration_s: float = Field(gt=0)
    step_s: float = Field(default=0.1, gt=0, description="ground-truth sampling period")
    seed: int = 1
    start_utc: float | None = Field(default=None, description="epoch seconds; default: now")
    node: NodeSpec
    sensors: list[SimSensorSpec]
    targets: list[TargetSpec] = Field(default_factory=list)
    zones: list[ZoneSpec] = Field(default_factory=list)
    gospa_c_m: float = Field(
        default=100.0,
        gt=0,
        description="GOSPA cut-off (m) in `cuas-node eval`: larger errors count as misses",
    )


def builtin_names() -> list[str]:
    folder = resources.files("cuas_node.drivers.sim") / "scenarios"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path; errors as `ConfigError`."""
    if name_or_path in builtin_names():
        resource = resources.files("cuas_node.drivers.sim") / "scenarios" / f"{name_or_path}.toml"
        text, source = resource.read_text(encoding="utf-8"), f"built-in scenario {name_or_path}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            known = ", ".join(builtin_names())
            raise ConfigError(
                [f"no scenario named {name_or_path!r} (built-in: {known}) and no such file"], name_or_path
            )
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax error: {exc}"], source) from None
    try:
        return Scenario(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc), source) from None
