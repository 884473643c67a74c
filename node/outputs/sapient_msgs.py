"""SAPIENT (BSI Flex 335 v2.0) identifiers, framing and the registration message of this node.

Why these ids: SAPIENT names a node by a lower-case UUID v4 and every report and object by an
upper-case ULID (Crockford base32, 48-bit millisecond time then 80 bits). A fusion node keeps its
picture by those ids, so the node's own uuid is derived from `node.id` (the same node registers
as the same ASM after a restart) and a track's object id from the node, the session and the track
number (the same track keeps one id over reconnects). The messages are the `sapient-proto` PyPI
bindings (protobuf), checked against the official `.proto` files by tests/test_sapient_proto.py.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sapient_msg.bsi_flex_335_v2_0 import (
    location_pb2,
    range_bearing_pb2,
    registration_pb2,
    sapient_message_pb2,
    velocity_pb2,
)

from cuas_node.outputs import sapient_map

Registration = registration_pb2.Registration
SapientMessage = sapient_message_pb2.SapientMessage
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MAX_FRAME_BYTES = 16 * 1024 * 1024  # Apex's default limit is 1 MiB; anything near this is garbage
DEG_PER_M = 1.0 / 111_320.0  # metres of northing per degree of latitude (WGS84, mean)


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """One configured sensor as SAPIENT describes it: its kind and where it looks
    (`cuas_node.web.scene.coverage`, the same dict the live view draws)."""

    id: str
    kind: str
    coverage: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SapientSettings:
    node_id: str  # the node's `node.id` (a name)
    node_uuid: str  # its SAPIENT id
    session: int
    sensors: Sequence[SensorInfo] = ()
    status_interval_s: float = 5.0
    software_version: str = ""


def node_uuid(node_id: str) -> str:
    """A lower-case UUID v4 derived stably from the node's name (version and variant bits set)."""
    digest = hashlib.sha256(f"cuas-node/sapient/{node_id}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def ulid(t: float, tail: bytes | None = None) -> str:
    """An upper-case ULID: 48-bit milliseconds of `t`, then 80 bits (`tail`, else random)."""
    rest = tail[:10] if tail is not None else os.urandom(10)
    value = (max(0, int(t * 1000.0)) & ((1 << 48) - 1)) << 80 | int.from_bytes(rest, "big")
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def object_ulid(node_id: str, session: int, number: int, first_t: float) -> str:
    """A track's object id: its first time, then 80 bits hashed from node, session and number."""
    digest = hashlib.sha256(f"{node_id}/{session}/{number}".encode()).digest()
    return ulid(first_t, digest)


def frame(message: SapientMessage) -> bytes:
    """One message on the wire: a 4-byte little-endian length, then the serialised message."""
    body = message.SerializeToString()
    return struct.pack("<I", len(body)) + body


def envelope(settings: SapientSettings, wall: float, destination: str | None = None) -> SapientMessage:
    message = SapientMessage(node_id=settings.node_uuid)
    message.timestamp.FromNanoseconds(int(wall * 1e9))
    if destination is not None:
        message.destination_id = destination
    return message


def geo_location(
    lat: float, lon: float, alt_m: float, sigma_enu_m: tuple[float, float, float] | None = None
) -> location_pb2.Location:
    """WGS84 lat/lon degrees and ellipsoid height (LAT_LNG_DEG_M, WGS84_E); errors are 1-sigma in
    the coordinates' own units: degrees for x (longitude) and y (latitude), metres for z."""
    loc = location_pb2.Location(
        x=lon,
        y=lat,
        z=alt_m,
        coordinate_system=location_pb2.LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M,
        datum=location_pb2.LOCATION_DATUM_WGS84_E,
    )
    if sigma_enu_m is not None:
        east, north, up = sigma_enu_m
        loc.x_error = east * DEG_PER_M / max(math.cos(math.radians(lat)), 1e-6)
        loc.y_error = north * DEG_PER_M
        loc.z_error = up
    return loc


def coverage_cone(coverage: Mapping[str, Any]) -> range_bearing_pb2.RangeBearingCone | None:
    """A sensor's coverage as a cone around the node (degrees from true north, metres); None for a
    sensor that looks nowhere (the GPS)."""
    kind = coverage.get("type")
    cone = range_bearing_pb2.RangeBearingCone(
        elevation=0.0,
        coordinate_system=range_bearing_pb2.RANGE_BEARING_COORDINATE_SYSTEM_DEGREES_M,
        datum=range_bearing_pb2.RANGE_BEARING_DATUM_TRUE,
    )
    if kind == "sector":
        cone.azimuth = float(coverage["boresight_deg"]) % 360.0
        cone.horizontal_extent = 2.0 * float(coverage["half_width_deg"])
        cone.range = float(coverage["max_range_m"])
        return cone
    if kind == "beams":
        beams = [b for b in coverage.get("beams", ()) if b.get("beamwidth_deg") is not None]
        if len(beams) == 1:
            cone.azimuth = float(beams[0]["boresight_deg"]) % 360.0
            cone.horizontal_extent = float(beams[0]["beamwidth_deg"])
            return cone
    if kind in ("omni", "array", "beams"):
        cone.azimuth = 0.0
        cone.horizontal_extent = 360.0
        return cone
    return None


def _duration(seconds: float) -> Registration.Duration:
    return Registration.Duration(units=Registration.TIME_UNITS_SECONDS, value=seconds)


def _geo_type() -> Registration.LocationType:
    return Registration.LocationType(
        location_units=location_pb2.LOCATION_COORDINATE_SYSTEM_LAT_LNG_DEG_M,
        location_datum=location_pb2.LOCATION_DATUM_WGS84_E,
    )


def _cone_type() -> Registration.LocationType:
    return Registration.LocationType(
        range_bearing_units=range_bearing_pb2.RANGE_BEARING_COORDINATE_SYSTEM_DEGREES_M,
        range_bearing_datum=range_bearing_pb2.RANGE_BEARING_DATUM_TRUE,
    )


def detecting(settings: SapientSettings) -> list[SensorInfo]:
    return [s for s in settings.sensors if s.kind in sapient_map.NODE_TYPES]


def registration(settings: SapientSettings, wall: float) -> SapientMessage:
    """The registration: the node's real sensor types, capabilities, status, detection and task
    definitions (what the node reports and which tasks it can take)."""
    message = envelope(settings, wall)
    reg = message.registration
    reg.icd_version = sapient_map.ICD_VERSION
    reg.name = f"cuas-node {settings.node_id}"
    reg.short_name = settings.node_id[:32]
    types: dict[str, list[str]] = {}
    for sensor in detecting(settings):
        node_type, sub_type = sapient_map.NODE_TYPES[sensor.kind]
        subs = types.setdefault(node_type, [])
        if sub_type not in subs:
            subs.append(sub_type)
    if not types:  # a node with no detecting sensor still registers, as what it is
        types["NODE_TYPE_OTHER"] = ["sensor node without detecting sensors"]
    for node_type, subs in types.items():
        reg.node_definition.add(node_type=Registration.NodeType.Value(node_type), node_sub_type=subs)
    reg.capabilities.add(category="Tracking", type="Multi-sensor track fusion", value="true")
    for sensor in detecting(settings):
        category = sapient_map.NODE_TYPES[sensor.kind][1]
        cone = coverage_cone(sensor.coverage)
        reg.capabilities.add(category=category, type="Sensor", value=sensor.id)
        if cone is not None and cone.HasField("range"):
            reg.capabilities.add(category=category, type="Maximum Range", value=f"{cone.range:g}", units="m")
        if cone is not None:
            extent = f"{cone.horizontal_extent:g}"
            reg.capabilities.add(
                category=category, type="Horizontal Field of View", value=extent, units="deg"
            )
    status = reg.status_definition
    status.status_interval.CopyFrom(_duration(settings.status_interval_s))
    status.location_definition.CopyFrom(_geo_type())
    status.coverage_definition.CopyFrom(_cone_type())
    status.field_of_view_definition.CopyFrom(_cone_type())
    mode = reg.mode_definition.add(
        mode_name=sapient_map.MODE,
        mode_type=Registration.MODE_TYPE_DEFAULT,
        mode_description="all enabled sensors, fused tracks",
        scan_type=Registration.SCAN_TYPE_FIXED,
        tracking_type=Registration.TRACKING_TYPE_TRACK,
    )
    mode.settle_time.CopyFrom(_duration(0.0))
    definition = mode.detection_definition.add()
    definition.location_type.CopyFrom(_geo_type())
    classes = definition.detection_class_definition.add(
        confidence_definition=Registration.CONFIDENCE_DEFINITION_MULTI_CLASS
    )
    for top, subs in sapient_map.taxonomy().items():
        cls = classes.class_definition.add(type=top, units="probability (0-1)")
        for sub in subs:
            cls.sub_class.add(type=sub, units="probability (0-1)", level=1)
    for behaviour in sapient_map.BEHAVIOURS:
        definition.behaviour_definition.add(type=behaviour)
    definition.velocity_type.enu_velocity_units.CopyFrom(
        velocity_pb2.ENUVelocityUnits(
            east_north_rate_units=velocity_pb2.SPEED_UNITS_MS, up_rate_units=velocity_pb2.SPEED_UNITS_MS
        )
    )
    definition.velocity_type.location_datum = location_pb2.LOCATION_DATUM_WGS84_E
    track = Registration.DETECTION_REPORT_CATEGORY_TRACK
    definition.detection_report.add(category=track, type="sensors", units="sensor ids, comma separated")
    definition.detection_report.add(category=track, type="status", units="confirmed, coasting, lost")
    definition.detection_report.add(category=track, type="track_time", units="UTC, ISO 8601")
    definition.detection_report.add(category=track, type="bearing_only", units="true (else absent)")
    definition.geometric_error.CopyFrom(
        Registration.GeometricError(
            type="Standard Deviation",
            units="degrees (x, y), metres (z)",
            variation_type="per report, from the track covariance",
        )
    )
    task = mode.task
    task.concurrent_tasks = 1
    # Mandatory in v2.0 even for a node that takes no regional tasks: no region type is offered.
    task.region_definition.region_type.append(Registration.REGION_TYPE_UNSPECIFIED)
    task.region_definition.region_area.append(_geo_type())
    task.command.add(
        units=", ".join(sapient_map.SUPPORTED_REQUESTS),
        completion_time=_duration(1.0),
        type=Registration.COMMAND_TYPE_REQUEST,
    )
    task.command.add(
        units=sapient_map.MODE, completion_time=_duration(0.0), type=Registration.COMMAND_TYPE_MODE_CHANGE
    )
    config = reg.config_data.add(
        manufacturer="cuas-node project",
        model="cuas-node",
        serial_number=settings.node_id,
        software_version=settings.software_version,
    )
    for sensor in settings.sensors:
        config.sub_components.add(manufacturer="-", model=sensor.kind, serial_number=sensor.id)
    return message
