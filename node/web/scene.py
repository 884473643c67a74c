"""What the page draws that does not change while the node runs: each sensor's coverage, the
zones, the map tiles. Built from the configuration (`GET /api/scene`); zones replaced by a
`zone_update` command are sent to open pages as a new `scene` event.

Angles are compass bearings (degrees clockwise from true north) and sensor offsets metres
[east, north, up] from the node's reference point, as in the config; zones stay [lat, lon]
polygons (the page places them around the ENU origin of `info`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cuas_node.config import (
    AcousticArraySensor,
    Config,
    FpvRx5808Sensor,
    GenericRadarSensor,
    RemoteIdSensor,
    TiMmwaveSensor,
)
from cuas_node.config_sections import ZoneSection

TILES_PATH = "tiles/{z}/{x}/{y}.png"  # where the node serves `web.tiles_dir` (relative to the page)


def coverage(sensor: Any) -> dict[str, Any]:
    """How far and where a sensor looks, as the page draws it."""
    yaw = float(sensor.mount.yaw_deg)
    if isinstance(sensor, TiMmwaveSensor | GenericRadarSensor):
        return {
            "type": "sector",
            "boresight_deg": yaw,
            "half_width_deg": float(sensor.fov_az_deg),
            "max_range_m": float(sensor.max_range_m),
            "min_range_m": float(getattr(sensor, "min_range_m", 0.0)),
        }
    if isinstance(sensor, AcousticArraySensor):
        return {"type": "array", "heading_deg": yaw}  # hears all round; the heading of its x axis
    if isinstance(sensor, FpvRx5808Sensor):
        beams = [
            {"boresight_deg": yaw + r.boresight_deg, "beamwidth_deg": r.beamwidth_deg}
            for r in sensor.receivers
        ]
        return {"type": "beams", "beams": beams or [{"boresight_deg": yaw, "beamwidth_deg": None}]}
    if isinstance(sensor, RemoteIdSensor):
        return {"type": "omni"}
    return {"type": "none"}  # the GPS


def zone_entries(zones: Sequence[ZoneSection]) -> list[dict[str, Any]]:
    """Zones as the page draws them (the configured ones, or those a `zone_update` command set)."""
    return [
        {
            "id": z.id,
            "level": z.level,
            "polygon": [[lat, lon] for lat, lon in z.polygon],
            "floor_m": z.floor_m,
            "ceiling_m": z.ceiling_m,
            "classes": list(z.classes),
        }
        for z in zones
    ]


def scene(config: Config) -> dict[str, Any]:
    sensors = [
        {
            "id": s.id,
            "kind": s.kind,
            "enabled": s.enabled,
            "offset_m": [float(v) for v in s.mount.offset_m],
            "coverage": coverage(s),
        }
        for s in config.sensors
    ]
    zones = zone_entries(config.zones)
    web = config.web
    tiles = TILES_PATH if web.tiles_dir is not None else web.tiles_url  # offline tiles win
    return {
        "node_id": config.node.id,
        "sensors": sensors,
        "zones": zones,
        "tiles": tiles,
        "tracks_max_rate_hz": config.mqtt.tracks_max_rate_hz,
    }
