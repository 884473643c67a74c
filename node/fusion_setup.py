"""The composition root's translation of a validated `Config` into what fusion takes: the
tracker's parameters and each sensor's description (`FusionSetup`).

Kept apart from `cuas_node.assembly` (which adds the core step's values) so that the offline
tools that run fusion alone (the calibration procedures) wire it as the node does without
importing the core step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cuas_node.config import (
    AcousticArraySensor,
    Config,
    ConfigError,
    FpvRx5808Sensor,
    FusionSection,
    GenericRadarSensor,
    NmeaSensor,
    RemoteIdSensor,
    SensorConfig,
    TiMmwaveSensor,
)
from cuas_node.fusion.params import (
    BearingSensor,
    FusionParams,
    FusionSetup,
    PositionReceiver,
    PresenceSensor,
    RadarSensor,
    RemoteIdReceiver,
    SensorSpec,
)
from cuas_node.fusion.reflectors import SiteReflectors
from cuas_node.kernel.reports import GeoPoint


def fusion_params(section: FusionSection) -> FusionParams:
    """The tracker's keys of `[fusion]` (the others belong to the core step: `core_params`)."""
    return FusionParams(**{f.name: getattr(section, f.name) for f in dataclasses.fields(FusionParams)})


def sensor_spec(sensor: SensorConfig) -> SensorSpec:
    """What fusion must know of one configured sensor: its role, calibrated mount and coverage."""
    offset = sensor.time_offset_s
    if isinstance(sensor, TiMmwaveSensor | GenericRadarSensor):
        if isinstance(sensor, TiMmwaveSensor):  # its figures come from the chirp profile it runs
            figures = {
                "range_bias_m": sensor.range_bias_m,
                "blind_radial_mps": sensor.doppler_clutter_band_mps,
                **ti_radar_figures(sensor),
            }
        else:
            figures = radar_figures(sensor)
        return RadarSensor(
            sensor.id,
            sensor.mount.pose(),
            sensor.max_range_m,
            math.radians(sensor.fov_az_deg),
            math.radians(sensor.fov_el_deg),
            time_offset_s=offset,
            reflectors=read_reflectors(sensor),
            **figures,
        )
    if isinstance(sensor, AcousticArraySensor):
        from cuas_node.drivers.acoustic.driver import WINDOW_S
        from cuas_node.kernel.clock import STEP_S

        # A bearing is stamped at its window's centre and delivered after the block ending it; its
        # stamp may lag by up to a clock step more while the driver's offset tracking waits to tell
        # a clock step from a backlog (`AcousticArrayDriver._clock_offset`).
        delivery = WINDOW_S + STEP_S
        return BearingSensor(sensor.id, sensor.mount.pose(), time_offset_s=offset, delivery_s=delivery)
    if isinstance(sensor, RemoteIdSensor):
        return RemoteIdReceiver(sensor.id, time_offset_s=offset)
    if isinstance(sensor, FpvRx5808Sensor):
        return PresenceSensor(sensor.id, sensor.mount.pose(), time_offset_s=offset)
    if isinstance(sensor, NmeaSensor):
        return PositionReceiver(sensor.id, time_offset_s=offset, antenna_offset_m=sensor.mount.offset_m)
    raise TypeError(f"no fusion role for sensor kind {sensor.kind!r}")


SHIPPED_IWR6843_MAX_VELOCITY_MPS = 10.114
"""The unambiguous radial speed of drivers/radar/ti_profiles/iwr6843_drone.cfg
(`ti_cli.summarise_profile`; a test checks it)."""

_TI_CFAR_DB = 13.0
"""The range CFAR threshold assumed when a profile's `cfarCfg` gives none in dB (SDK 3.x, 9 args)."""


def _range_cfar_arg(commands: Sequence[Any], name: str, index: int) -> float | None:
    """Argument `index` of the range-direction (`procDirection` 0) line `name` of a TI profile."""
    for c in commands:
        if c.name == name and len(c.args) > index and c.args[1] == "0":
            return float(c.args[index])
    return None


def radar_figures(sensor: GenericRadarSensor) -> dict[str, Any]:
    """A generic radar's accuracies, rate and false alarms (the `RadarSensor` fields), as its
    section states them."""
    return {
        "min_range_m": sensor.min_range_m,
        "range_sigma_m": sensor.range_sigma_m,
        "az_sigma_rad": math.radians(sensor.az_sigma_deg),
        "el_sigma_rad": math.radians(sensor.el_sigma_deg),
        "range_rate": sensor.range_rate,
        "range_rate_sigma_mps": sensor.range_rate_sigma_mps if sensor.range_rate else None,
        "unambiguous_range_rate_mps": sensor.unambiguous_range_rate_mps if sensor.range_rate else None,
        "scan_rate_hz": sensor.rate_hz,
        "false_alarms_per_scan": sensor.false_alarms_per_scan,
        "splits_objects": sensor.splits_objects,
        "sweeps": sensor.sweeps,
    }


def ti_radar_figures(sensor: TiMmwaveSensor) -> dict[str, Any]:
    """A TI board's accuracies, scan rate and blind zone (the `RadarSensor` fields), from the chirp
    profile it runs and the node's clustering of its points.

    The profile is `cfg_file`, else the shipped one for `model` (also when `cfg_file` cannot be
    read or summarised: `config check` reports that file; fusion must still start). Range and
    range-rate come from the profile's resolutions, angles from the part's array
    (`RadarResolution`), each as drivers/radar/cluster.py turns a resolution into a sigma
    (resolution / sqrt(2·SNR), floored) at the range CFAR threshold (`cfarCfg`, 13 dB in the
    shipped profiles), where detections are worst; the scan rate is the `frameCfg` period's and
    the blind zone the range `cfarFovCfg` start. With neither profile readable the `RadarSensor`
    defaults (those of the shipped IWR6843 profile) stay, and its Doppler span."""
    from cuas_node.drivers.radar.cluster import RadarResolution
    from cuas_node.drivers.radar.ti_cli import load_profile, parse_cfg, summarise_profile

    for cfg_file in dict.fromkeys((sensor.cfg_file, None)):
        try:
            commands = parse_cfg(load_profile(cfg_file, sensor.model)[0])
            summary = summarise_profile(commands)
            threshold = _range_cfar_arg(commands, "cfarCfg", 7)
            blind_m = _range_cfar_arg(commands, "cfarFovCfg", 2) or 0.0
        except (OSError, ValueError, IndexError):
            continue
        if threshold is None or not 0.0 < threshold <= 40.0:  # SDK 2.x: not in dB
            threshold = _TI_CFAR_DB
        res = RadarResolution.iwr6843() if sensor.model == "iwr6843" else RadarResolution.xwr1642()
        root = math.sqrt(2.0 * 10.0 ** (threshold / 10.0))
        range_res, velocity_res = summary.range_resolution_m, summary.velocity_resolution_mps
        if res.has_elevation:
            el_sigma = max(res.el_res_rad / root, res.el_floor_rad)
        else:
            el_sigma = res.no_elevation_sigma_rad
        return {
            "min_range_m": max(blind_m, 0.0),
            "range_sigma_m": max(range_res / root, res.range_floor_fraction * range_res),
            "az_sigma_rad": max(res.az_res_rad / root, res.az_floor_rad),
            "el_sigma_rad": el_sigma,
            "range_rate": True,
            "range_rate_sigma_mps": max(velocity_res / root, res.doppler_floor_fraction * velocity_res),
            "unambiguous_range_rate_mps": summary.max_velocity_mps,
            "scan_rate_hz": 1.0 / summary.frame_period_s if summary.frame_period_s > 0 else 20.0,
        }
    return {"unambiguous_range_rate_mps": SHIPPED_IWR6843_MAX_VELOCITY_MPS}


def fusion_setup(config: Config) -> FusionSetup:
    position = config.node.position
    origin = GeoPoint(position.lat, position.lon, position.alt_m) if position is not None else None
    sensors = tuple(sensor_spec(s) for s in config.sensors if s.enabled)
    return FusionSetup(fusion_params(config.fusion), sensors, origin, config.node.ground_alt_m)


def read_reflectors(sensor: TiMmwaveSensor | GenericRadarSensor) -> SiteReflectors | None:
    """The radar's `reflectors_file` (what `calibrate radar-reflectors` wrote), or None without
    one. A file that cannot be used stops the node (`config check` says so first): a ConfigError
    naming the sensor, the file and why."""
    path = sensor.reflectors_file
    if path is None:
        return None
    try:
        site = SiteReflectors.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        problem = f"cannot read it: {exc.strerror or exc}"
    except json.JSONDecodeError as exc:
        problem = f"not JSON ({exc})"
    except (ValueError, UnicodeDecodeError) as exc:
        problem = str(exc)
    else:
        measures_rate = isinstance(sensor, TiMmwaveSensor) or sensor.range_rate
        if site.sensor_id not in (None, sensor.id):
            problem = f"learnt for sensor {site.sensor_id!r}: learn this radar's own"
        elif site.dim < 4 and measures_rate:
            problem = "learnt without range-rate, and this radar measures it: learn it again from its plots"
        else:
            return site
    raise ConfigError([f"sensor {sensor.id!r}: reflectors_file {path}: {problem}"], "sensors")
