"""The composition root's translations: a validated `Config` into the frozen values each layer takes.

Fusion and the core step never see the configuration file's models; the runtime, replay, eval
and the calibration tools build them here, so every entry point wires the node the same way.
(Drivers are built from the same config by `cuas_node.driver_factory`.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from cuas_node.config import (
    AcousticArraySensor,
    Config,
    FpvRx5808Sensor,
    FusionSection,
    NmeaSensor,
    RemoteIdSensor,
    SensorConfig,
    TiMmwaveSensor,
    ZoneSection,
)
from cuas_node.core.step import CoreParams, CoreSetup
from cuas_node.core.zones import ZoneSpec
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
from cuas_node.kernel.reports import GeoPoint


def fusion_params(section: FusionSection) -> FusionParams:
    """The tracker's keys of `[fusion]` (the others belong to the core step: `core_params`)."""
    return FusionParams(**{f.name: getattr(section, f.name) for f in dataclasses.fields(FusionParams)})


def core_params(config: Config) -> CoreParams:
    return CoreParams(
        reorder_window_s=config.fusion.reorder_window_s,
        tracks_max_rate_hz=config.mqtt.tracks_max_rate_hz,
        alert_update_s=config.fusion.alert_update_s,
        rid_only_alerts_per_min=config.fusion.rid_only_alerts_per_min,
    )


def sensor_spec(sensor: SensorConfig) -> SensorSpec:
    """What fusion must know of one configured sensor: its role, calibrated mount and coverage."""
    offset = sensor.time_offset_s
    if isinstance(sensor, TiMmwaveSensor):
        return RadarSensor(
            sensor.id,
            sensor.mount.pose(),
            sensor.max_range_m,
            math.radians(sensor.fov_az_deg),
            math.radians(sensor.fov_el_deg),
            range_bias_m=sensor.range_bias_m,
            time_offset_s=offset,
        )
    if isinstance(sensor, AcousticArraySensor):
        return BearingSensor(sensor.id, sensor.mount.pose(), time_offset_s=offset)
    if isinstance(sensor, RemoteIdSensor):
        return RemoteIdReceiver(sensor.id, time_offset_s=offset)
    if isinstance(sensor, FpvRx5808Sensor):
        return PresenceSensor(sensor.id, sensor.mount.pose(), time_offset_s=offset)
    if isinstance(sensor, NmeaSensor):
        return PositionReceiver(sensor.id, time_offset_s=offset, antenna_offset_m=sensor.mount.offset_m)
    raise TypeError(f"no fusion role for sensor kind {sensor.kind!r}")


def fusion_setup(config: Config) -> FusionSetup:
    position = config.node.position
    origin = GeoPoint(position.lat, position.lon, position.alt_m) if position is not None else None
    sensors = tuple(sensor_spec(s) for s in config.sensors if s.enabled)
    return FusionSetup(fusion_params(config.fusion), sensors, origin, config.node.ground_alt_m)


def zone_specs(sections: Iterable[ZoneSection]) -> tuple[ZoneSpec, ...]:
    return tuple(
        ZoneSpec(
            id=z.id,
            level=z.level,
            polygon=tuple((float(lat), float(lon)) for lat, lon in z.polygon),
            floor_m=z.floor_m,
            ceiling_m=z.ceiling_m,
            classes=frozenset(z.classes),
        )
        for z in sections
    )


def core_setup(config: Config) -> CoreSetup:
    return CoreSetup(fusion_setup(config), core_params(config), zone_specs(config.zones))
