"""ASTM F3411 / ASD-STAN EN 4709-002 Open Drone ID: the 25-byte messages and the message pack.

Decoding is lenient on purpose: a receiver must hear every transmitter on the air, including old
(F3411-19, protocol version 0) and buggy ones, so the protocol version is recorded but never
rejected, reserved bits are ignored, and values outside their valid range are *flagged* (the value
is left out and its name is added to `flags`) rather than raising. Only structure errors (a short
buffer, a message type that does not exist) raise `ParseError`, and `decode_payload` turns those
into counter names so that one bad message in a pack does not lose the others.

Values the standard reserves for "invalid/unknown" (direction 361, speed 255, vertical speed 63,
altitude code 0, lat = lon = 0, timestamp 0xFFFF) decode to None. Exact encodings are those of
opendroneid-core-c (see /work/shared/docs/protocols.md section 2.1).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from cuas_node.drivers.parsing import ParseError

MESSAGE_SIZE = 25
MAX_PACK_MESSAGES = 9
ODID_EPOCH_UNIX = 1546300800
"""2019-01-01T00:00:00Z: System and Authentication timestamps count seconds from here."""

BASIC_ID, LOCATION, AUTH, SELF_ID, SYSTEM, OPERATOR_ID, PACK = 0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0xF

UA_TYPES = (
    "none", "aeroplane", "helicopter_or_multirotor", "gyroplane", "hybrid_lift", "ornithopter", "glider",
    "kite", "free_balloon", "captive_balloon", "airship", "free_fall_or_parachute", "rocket",
    "tethered_powered_aircraft", "ground_obstacle", "other",
)  # fmt: skip
ID_TYPES = ("none", "serial_number", "caa_registration", "utm_uuid", "specific_session_id")
TEXT_ID_TYPES = frozenset({1, 2})
STATUSES = ("undeclared", "ground", "airborne", "emergency", "remote_id_system_failure")
HEIGHT_TYPES = ("takeoff", "ground")
AUTH_TYPES = (
    "none", "uas_id_signature", "operator_id_signature", "message_set_signature", "network_remote_id",
    "specific_authentication",
)  # fmt: skip
SELF_ID_TYPES = ("text", "emergency", "extended_status")
OPERATOR_LOCATION_TYPES = ("takeoff", "live_gnss", "fixed")
CLASSIFICATION_TYPES = ("undeclared", "eu")
CATEGORIES_EU = ("undeclared", "open", "specific", "certified")
CLASSES_EU = ("undeclared", "c0", "c1", "c2", "c3", "c4", "c5", "c6")

# Accuracy codes → the upper bound they stand for (code 0 = unknown → None; beyond the table = reserved).
H_ACCURACY_M: tuple[float | None, ...] = (
    None, 18520.0, 7408.0, 3704.0, 1852.0, 926.0, 555.6, 185.2, 92.6, 30.0, 10.0, 3.0, 1.0,
)  # fmt: skip
V_ACCURACY_M: tuple[float | None, ...] = (None, 150.0, 45.0, 25.0, 10.0, 3.0, 1.0)
SPEED_ACCURACY_MPS: tuple[float | None, ...] = (None, 10.0, 3.0, 1.0, 0.3)

_BASIC = struct.Struct("<BB20s3s")
_LOCATION = struct.Struct("<BBBBbiiHHHBBHBB")
_AUTH0 = struct.Struct("<BBBBI17s")
_AUTH_N = struct.Struct("<BB23s")
_SELF_ID = struct.Struct("<BB23s")
_SYSTEM = struct.Struct("<BBiiHBHHBHIB")
_OPERATOR = struct.Struct("<BB20s3s")


def name_of(table: tuple[str, ...], code: int, private_from: int | None = None) -> str:
    """A code's name, `private_N` or `reserved_N` when the table has none, so output stays textual."""
    if 0 <= code < len(table):
        return table[code]
    if private_from is not None and code >= private_from:
        return f"private_{code}"
    return f"reserved_{code}"


def ascii_field(raw: bytes) -> str:
    """ODID strings are NUL-padded and may fill the field with no terminator; junk bytes become U+FFFD."""
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def decode_altitude(code: int) -> float | None:
    return None if code == 0 else code * 0.5 - 1000.0


def decode_latlon(
    lat_e7: int, lon_e7: int, flags: list[str], prefix: str = ""
) -> tuple[float | None, float | None]:
    if lat_e7 == 0 and lon_e7 == 0:
        return None, None
    lat, lon = lat_e7 / 1e7, lon_e7 / 1e7
    if abs(lat) > 90.0 or abs(lon) > 180.0:
        flags.append(f"{prefix}position_out_of_range")
        return None, None
    return lat, lon


@dataclass(frozen=True, slots=True)
class BasicId:
    msg_type: ClassVar[str] = "basic_id"
    id_type: int | None
    """None only for IDs relayed as bare text by a receiver that does not say which type they are."""
    ua_type: int
    uas_id: bytes
    """The 20-byte field as sent (text IDs are NUL-padded)."""
    version: int = 2
    flags: tuple[str, ...] = field(default=(), compare=False)

    @property
    def id(self) -> str:
        """Text for the textual ID types (serial number, CAA registration), hex for the others."""
        if self.id_type is None or self.id_type in TEXT_ID_TYPES:
            return ascii_field(self.uas_id)
        return self.uas_id.hex()


@dataclass(frozen=True, slots=True)
class Location:
    msg_type: ClassVar[str] = "location"
    status: int = 0
    height_type: int = 0
    direction_deg: float | None = None
    speed_h_mps: float | None = None
    speed_v_mps: float | None = None
    lat: float | None = None
    lon: float | None = None
    alt_baro_m: float | None = None
    alt_geo_m: float | None = None
    height_m: float | None = None
    h_accuracy: int = 0
    v_accuracy: int = 0
    baro_accuracy: int = 0
    speed_accuracy: int = 0
    timestamp_s: float | None = None
    """Seconds after the start of the current UTC hour (0..3600)."""
    timestamp_accuracy_s: float | None = None
    version: int = 2
    flags: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Auth:
    msg_type: ClassVar[str] = "auth"
    auth_type: int
    page: int
    data: bytes
    """17 bytes on page 0, 23 on the others."""
    last_page_index: int | None = None
    length: int | None = None
    timestamp: float | None = None
    """Unix seconds (page 0 only)."""
    version: int = 2
    flags: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class SelfId:
    msg_type: ClassVar[str] = "self_id"
    desc_type: int
    description: str
    version: int = 2
    flags: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class System:
    msg_type: ClassVar[str] = "system"
    operator_location_type: int = 0
    classification_type: int = 0
    operator_lat: float | None = None
    operator_lon: float | None = None
    area_count: int = 1
    area_radius_m: float = 0.0
    area_ceiling_m: float | None = None
    area_floor_m: float | None = None
    category_eu: int = 0
    class_eu: int = 0
    operator_alt_geo_m: float | None = None
    timestamp: float | None = None
    """Unix seconds (whole), None when the transmitter sends 0."""
    version: int = 2
    flags: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class OperatorId:
    msg_type: ClassVar[str] = "operator_id"
    operator_id_type: int
    operator_id: str
    version: int = 2
    flags: tuple[str, ...] = field(default=(), compare=False)


OdidMessage = BasicId | Location | Auth | SelfId | System | OperatorId


def _decode_basic(b: bytes, version: int) -> BasicId:
    _, types, uas_id, _ = _BASIC.unpack(b)
    id_type = types >> 4
    flags = ("id_type_reserved",) if id_type >= len(ID_TYPES) else ()
    return BasicId(id_type, types & 0x0F, uas_id, version, flags)


def _decode_location(b: bytes, version: int) -> Location:
    _, bits, direction, speed, vspeed, lat_e7, lon_e7, baro, geo, height, vh_acc, bs_acc, ts, ts_acc, _ = (
        _LOCATION.unpack(b)
    )
    flags: list[str] = []
    status = bits >> 4
    if status >= len(STATUSES):
        flags.append("status_reserved")
    direction_deg: float | None = float(direction + (180 if bits & 0x02 else 0))
    if direction_deg == 361.0:
        direction_deg = None
    elif direction_deg is not None and direction_deg >= 360.0:
        flags.append("direction_out_of_range")
        direction_deg = None
    speed_h: float | None = speed * 0.75 + 63.75 if bits & 0x01 else speed * 0.25
    if bits & 0x01 and speed == 255:
        speed_h = None
    speed_v: float | None = vspeed * 0.5
    if vspeed == 126:
        speed_v = None
    elif abs(vspeed) > 124:
        flags.append("speed_v_out_of_range")
        speed_v = None
    lat, lon = decode_latlon(lat_e7, lon_e7, flags)
    timestamp_s: float | None = None
    if ts != 0xFFFF:
        if ts > 36000:
            flags.append("timestamp_out_of_range")
        else:
            timestamp_s = ts / 10.0
    h_acc, v_acc, b_acc, s_acc = vh_acc & 0x0F, vh_acc >> 4, bs_acc >> 4, bs_acc & 0x0F
    for name, code, table in (
        ("h_accuracy", h_acc, H_ACCURACY_M),
        ("v_accuracy", v_acc, V_ACCURACY_M),
        ("baro_accuracy", b_acc, V_ACCURACY_M),
        ("speed_accuracy", s_acc, SPEED_ACCURACY_MPS),
    ):
        if code >= len(table):
            flags.append(f"{name}_reserved")
    return Location(
        status=status,
        height_type=(bits >> 2) & 0x01,
        direction_deg=direction_deg,
        speed_h_mps=speed_h,
        speed_v_mps=speed_v,
        lat=lat,
        lon=lon,
        alt_baro_m=decode_altitude(baro),
        alt_geo_m=decode_altitude(geo),
        height_m=decode_altitude(height),
        h_accuracy=h_acc,
        v_accuracy=v_acc,
        baro_accuracy=b_acc,
        speed_accuracy=s_acc,
        timestamp_s=timestamp_s,
        timestamp_accuracy_s=(ts_acc & 0x0F) / 10.0 or None,
        version=version,
        flags=tuple(flags),
    )


def _decode_auth(b: bytes, version: int) -> Auth:
    auth_type, page = b[1] >> 4, b[1] & 0x0F
    if page != 0:
        return Auth(auth_type, page, _AUTH_N.unpack(b)[2], version=version)
    _, _, last_page, length, ts, data = _AUTH0.unpack(b)
    flags: list[str] = []
    if 17 + last_page * 23 < length:
        flags.append("auth_length_inconsistent")
    if last_page > 15:
        flags.append("last_page_index_out_of_range")
    return Auth(
        auth_type, 0, data, last_page, length, ts + ODID_EPOCH_UNIX if ts else None, version, tuple(flags)
    )


def _decode_self_id(b: bytes, version: int) -> SelfId:
    _, desc_type, desc = _SELF_ID.unpack(b)
    return SelfId(desc_type, ascii_field(desc), version)


def _decode_system(b: bytes, version: int) -> System:
    _, bits, lat_e7, lon_e7, count, radius, ceiling, floor, cat_class, op_alt, ts, _ = _SYSTEM.unpack(b)
    flags: list[str] = []
    lat, lon = decode_latlon(lat_e7, lon_e7, flags, "operator_")
    category, klass = cat_class >> 4, cat_class & 0x0F
    if category >= len(CATEGORIES_EU) or klass >= len(CLASSES_EU):
        flags.append("eu_class_reserved")
    return System(
        operator_location_type=bits & 0x03,
        classification_type=(bits >> 2) & 0x07,
        operator_lat=lat,
        operator_lon=lon,
        area_count=count,
        area_radius_m=radius * 10.0,
        area_ceiling_m=decode_altitude(ceiling),
        area_floor_m=decode_altitude(floor),
        category_eu=category,
        class_eu=klass,
        operator_alt_geo_m=decode_altitude(op_alt),
        timestamp=float(ts + ODID_EPOCH_UNIX) if ts else None,
        version=version,
        flags=tuple(flags),
    )


def _decode_operator(b: bytes, version: int) -> OperatorId:
    _, id_type, op_id, _ = _OPERATOR.unpack(b)
    return OperatorId(id_type, ascii_field(op_id), version)


_DECODERS: dict[int, Callable[[bytes, int], OdidMessage]] = {
    BASIC_ID: _decode_basic,
    LOCATION: _decode_location,
    AUTH: _decode_auth,
    SELF_ID: _decode_self_id,
    SYSTEM: _decode_system,
    OPERATOR_ID: _decode_operator,
}


def decode_message(data: bytes) -> OdidMessage:
    """One 25-byte message (not a pack); ParseError for a wrong length or a type that does not exist."""
    if len(data) != MESSAGE_SIZE:
        raise ParseError(f"message of {len(data)} bytes, expected {MESSAGE_SIZE}")
    decoder = _DECODERS.get(data[0] >> 4)
    if decoder is None:
        raise ParseError(f"message type {data[0] >> 4:#x} is not a single message")
    return decoder(bytes(data), data[0] & 0x0F)


@dataclass(slots=True)
class PayloadResult:
    messages: list[OdidMessage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Counter names of what went wrong (e.g. `truncated_pack`, `unknown_message_type`)."""


def decode_payload(payload: bytes) -> PayloadResult:
    """What follows the message counter on every carrier: one message, or a message pack.

    A pack's declared count is believed only as far as the bytes go (a truncated pack yields its
    complete messages and a `truncated_pack` error); bytes after the last message are padding
    (BT5 adverts reserve room for 9 messages).
    """
    out = PayloadResult()
    if not payload:
        out.errors.append("empty_payload")
        return out
    if payload[0] >> 4 != PACK:
        if len(payload) < MESSAGE_SIZE:
            out.errors.append("truncated_message")
            return out
        _decode_into(payload[:MESSAGE_SIZE], out)
        return out
    if len(payload) < 3:
        out.errors.append("truncated_pack")
        return out
    size, count = payload[1], payload[2]
    if size != MESSAGE_SIZE:
        out.errors.append("bad_pack_message_size")
        return out
    if count == 0:
        out.errors.append("empty_pack")
        return out
    if count > MAX_PACK_MESSAGES:
        out.errors.append("pack_too_large")
        count = MAX_PACK_MESSAGES
    available = (len(payload) - 3) // MESSAGE_SIZE
    if available < count:
        out.errors.append("truncated_pack")
        count = available
    for i in range(count):
        start = 3 + i * MESSAGE_SIZE
        _decode_into(payload[start : start + MESSAGE_SIZE], out)
    return out


def _decode_into(message: bytes, out: PayloadResult) -> None:
    if message[0] >> 4 == PACK:
        out.errors.append("nested_pack")
        return
    try:
        out.messages.append(decode_message(message))
    except ParseError:
        out.errors.append("unknown_message_type")


def resolve_hour(timestamp_s: float, t_ref: float, max_skew_s: float = 30.0) -> float | None:
    """Unix time of a Location timestamp (seconds past the hour): the hour that puts it nearest `t_ref`.

    None when even that is more than `max_skew_s` from `t_ref`: the transmitter's clock (or the
    receiver's) is off, or the field is a constant (many transmitters send 0), so it is not a time.
    """
    hour = t_ref - t_ref % 3600.0
    best = min(
        (hour - 3600.0 + timestamp_s, hour + timestamp_s, hour + 3600.0 + timestamp_s),
        key=lambda t: abs(t - t_ref),
    )
    return best if abs(best - t_ref) <= max_skew_s else None
