"""What fusion is told: frozen parameters and sensor descriptions, built by the composition root.

Fusion never reads the configuration file's models (pydantic sections): `cuas_node.fusion_setup`
turns a validated config into these plain values, so fusion can be driven from anywhere (the node,
replay, evaluation, benchmarks, another generator's measurement sets) and depends only on the
kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cuas_node.fusion.reflectors import SiteReflectors
from cuas_node.kernel.physics import SPEED_OF_SOUND_MPS
from cuas_node.kernel.pose import Pose
from cuas_node.kernel.reports import GeoPoint


@dataclass(frozen=True, slots=True)
class FusionParams:
    """The tracker's tuning (docs/config.md, `[fusion]`, has the meaning of each)."""

    confirm_m: int = 3  # of the last confirm_n looks, besides the track score (initiation.py)
    confirm_n: int = 6
    gate_probability: float = 0.999
    coast_after_s: float = 0.6
    delete_after_s: float = 3.0
    tentative_delete_after_s: float = 1.0
    max_outlive_s: float = 0.0  # the longest wait `ClutterMap.outlive_s` may ask (`fusion.max_outlive_s`)
    max_position_sigma_m: float = 200.0
    process_accel_mps2: float = 3.0
    process_accel_vertical_mps2: float = 1.0
    turn_rate_dps: float = 11.5
    max_tracks: int = 4096  # the table grows to it as tracks need slots (tracks.TrackTable)
    max_tentative: int = 128
    rid_loose_gate_m: float = 150.0
    rid_only_max_tracks: int = 32
    rid_spoofing_new_per_min: int = 20
    publish_tentative: bool = False
    detection_probability: float = 0.9
    clutter_per_scan: float = 2.0
    false_track_probability: float = 1e-4
    miss_probability: float = 0.05
    learn_fixtures_after_s: float = 2700.0  # plots recurring at one place this long are site (`fixtures`)
    local_clutter: bool = True  # places giving several plots a scan priced as clutter (`local_clutter`)
    clutter_profile: bool = True  # false alarms priced where they fall (`clutter_profile`)


@dataclass(frozen=True, slots=True)
class RadarSensor:
    """A radar: range, azimuth, elevation and, when it measures it, range-rate in its own frame.

    Besides where it looks (`pose`, `min_range_m`..`max_range_m`, the half-widths `fov_az_rad`,
    `fov_el_rad`), it says how well and how often, so that the tracker can derive its gates,
    clutter density and timings from the sensor rather than from numbers tuned on one radar:

    - `range_sigma_m`, `az_sigma_rad`, `el_sigma_rad`: the typical 1-sigma error of one detection
      (each detection also carries its own sigmas, which the filter uses; these describe the
      sensor as a whole, e.g. the worst case near its detection threshold);
    - `range_rate`: whether it measures range-rate (Doppler); `range_rate_sigma_mps` its 1-sigma
      error, None when it does not; `unambiguous_range_rate_mps` the radial speed beyond which
      its range-rate wraps (±; a TI board's `max_velocity_mps`; `gating` then wraps the
      innovation and a young track's second plot tells the alias), None when it does not wrap
      (it resolves the ambiguity, or the data are not a radar's own);
    - `scan_rate_hz`: frames (looks at the whole coverage) per second;
    - `false_alarms_per_scan`: the clutter it is expected to report per frame, spread over its
      coverage (the starting clutter density of association, learnt from its scans afterwards);
      None (TI boards): `fusion.clutter_per_scan`;
    - `splits_objects`: whether one object may yield more than one detection in a frame (the
      node's clustering of a TI board's point cloud may cut one object in two): two detections of
      a frame within each other's noise are then taken for one object. False for a plot extractor,
      which reports each object it resolves once a frame, so two plots are two objects however
      close;
    - `sweeps`: a scanning radar whose plots carry the time its beam passed them (each plot its
      own time, so no one of them is a look at the whole coverage): plots are fused as they come
      and the coverage counts as looked at once a sweep, every `1 / scan_rate_hz` s (`engine`);
    - `blind_radial_mps`: the Doppler notch, |range-rate| under which no plot comes (the node's
      clustering drops a TI board's points there as static clutter: `doppler_clutter_band_mps`);
      an established track there is seen only as far as noise carries its plots out, and its
      misses count for that much (`looks.doppler_visible`); 0 for none;
    - `range_bias_m`, `time_offset_s`: calibration, applied by fusion;
    - `reflectors`: the site's fixed reflectors as this radar sees them (calibration:
      `fusion.reflectors`), which the track score counts as clutter where they are.

    The defaults are those of a TI IWR6843 running the shipped profile
    (drivers/radar/ti_profiles/iwr6843_drone.cfg: 0.45 m range and 0.63 m/s velocity resolution,
    20 frames/s, range CFAR from 0.25 m at 13 dB) through the node's clustering
    (drivers/radar/cluster.py: resolution / sqrt(2·SNR), floored at half a cell) at that 13 dB
    threshold (but for `unambiguous_range_rate_mps`: None, since measurements made up in code
    do not wrap); `cuas_node.assembly` derives them from the configured profile for a
    `ti-mmwave` sensor (the span too) and takes them from the config for a `radar` one.
    """

    sensor_id: str
    pose: Pose
    max_range_m: float
    fov_az_rad: float = math.radians(60.0)
    fov_el_rad: float = math.radians(45.0)
    range_bias_m: float = 0.0
    time_offset_s: float = 0.0
    min_range_m: float = 0.0
    range_sigma_m: float = 0.225
    az_sigma_rad: float = 0.0396  # 2.3°: a 14° beam (8 virtual antennas) at 13 dB
    el_sigma_rad: float = 0.0829  # 4.7°: the IWR6843's 30° elevation cell at 13 dB
    range_rate: bool = True
    range_rate_sigma_mps: float | None = 0.316
    unambiguous_range_rate_mps: float | None = None
    scan_rate_hz: float = 20.0
    false_alarms_per_scan: float | None = None
    splits_objects: bool = True
    sweeps: bool = False
    blind_radial_mps: float = 0.0
    reflectors: SiteReflectors | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class BearingSensor:
    """A direction finder (the acoustic array): azimuth and elevation only. `propagation_mps` is
    the speed of what it senses (sound arrives late by range / 343 m/s); None for light-speed.
    `delivery_s`: how long after their capture time its measurements normally reach fusion (an
    array's bearing is stamped at the centre of its analysis window and delivered once the block
    that ends the window is analysed: half the 1 s window, and up to a block of 0.5 s more; the
    composition root adds the clock step its offset tracking tolerates, `fusion_setup`)."""

    sensor_id: str
    pose: Pose
    max_range_m: float = 600.0
    propagation_mps: float | None = SPEED_OF_SOUND_MPS
    time_offset_s: float = 0.0
    delivery_s: float = 1.0


@dataclass(frozen=True, slots=True)
class RemoteIdReceiver:
    """A Remote ID receiver: broadcasters' own claims of position (and velocity)."""

    sensor_id: str
    time_offset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PresenceSensor:
    """An RF presence detector (the FPV video scanner): evidence for a class, never a position."""

    sensor_id: str
    pose: Pose
    max_range_m: float = 1500.0
    time_offset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PositionReceiver:
    """The node's own GNSS receiver: fixes place the local frame's origin when none is configured.
    `uere_m`: its user-equivalent range error (1 sigma); a fix's horizontal accuracy is HDOP times
    this (5 m: a single-frequency GPS receiver under the GPS SPS performance standard)."""

    sensor_id: str
    time_offset_s: float = 0.0
    uere_m: float = 5.0
    antenna_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Where the antenna is from the node's reference point (east, north, up; its mount offset):
    fixes are moved back by it, so the frame's origin is the reference point, not the antenna."""


SensorSpec = RadarSensor | BearingSensor | RemoteIdReceiver | PresenceSensor | PositionReceiver


@dataclass(frozen=True, slots=True)
class FusionSetup:
    """Everything a `FusionEngine` needs. `sensors` keeps the configured order: it fixes each
    sensor's bit in the tracks' sensor masks, hence the order of `sensors` in the output."""

    params: FusionParams
    sensors: tuple[SensorSpec, ...]
    origin: GeoPoint | None = None
    ground_alt_m: float | None = None
    """The ground's altitude (WGS84 ellipsoid) around the node; None: the node's reference point
    (the mast foot) is on the ground (fusion/ground.py)."""
