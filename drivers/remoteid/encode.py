"""Open Drone ID encoder: the inverse of `messages`, for the simulator and for round-trip tests.

The quantisation follows opendroneid-core-c exactly (round half away from zero for direction, lat/lon
and timestamps; truncation for altitudes and vertical speed), so that the simulator's bytes are the
bytes a real transmitter would send. One deliberate difference: valid inputs beyond a field's range
are clamped to its largest *valid* code (e.g. 254.25 m/s, ±62 m/s) instead of spilling into the
code that means "invalid".
"""

from __future__ import annotations

import math

from cuas_node.drivers.remoteid.messages import (
    _AUTH0,
    _AUTH_N,
    _BASIC,
    _LOCATION,
    _OPERATOR,
    _SELF_ID,
    _SYSTEM,
    AUTH,
    BASIC_ID,
    LOCATION,
    MAX_PACK_MESSAGES,
    MESSAGE_SIZE,
    ODID_EPOCH_UNIX,
    OPERATOR_ID,
    PACK,
    SELF_ID,
    SYSTEM,
    Auth,
    BasicId,
    Location,
    OdidMessage,
    OperatorId,
    SelfId,
    System,
)


def _round(x: float) -> int:
    """C `roundf`: half away from zero (Python's round() is half-to-even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


def encode_altitude(alt_m: float | None) -> int:
    if alt_m is None:
        return 0
    return _clamp(int((alt_m + 1000.0) / 0.5), 0, 65535)


def encode_direction(deg: float | None) -> tuple[int, int]:
    """(EW bit, code). Invalid (None) is 361 → EW=1, code 181."""
    if deg is None:
        return 1, 181
    d = _round(deg) % 360
    return (0, d) if d < 180 else (1, d - 180)


def encode_speed_h(mps: float | None) -> tuple[int, int]:
    """(multiplier bit, code). Invalid (None) is 255 m/s → mult=1, code 255."""
    if mps is None:
        return 1, 255
    if mps <= 63.75:
        return 0, _clamp(int(max(mps, 0.0) / 0.25 + 0.5), 0, 255)
    return 1, _clamp(int((mps - 63.75) / 0.75 + 0.5), 0, 254)


def encode_speed_v(mps: float | None) -> int:
    if mps is None:
        return 126
    return _clamp(int(mps / 0.5), -124, 124)


def encode_latlon(lat: float | None, lon: float | None) -> tuple[int, int]:
    if lat is None or lon is None:
        return 0, 0
    return _clamp(_round(lat * 1e7), -900_000_000, 900_000_000), _clamp(
        _round(lon * 1e7), -1_800_000_000, 1_800_000_000
    )


def encode_timestamp_hour(seconds: float | None) -> int:
    if seconds is None:
        return 0xFFFF
    return _clamp(_round(seconds * 10.0), 0, 36000)


def _epoch2019(unix_s: float | None) -> int:
    return 0 if unix_s is None else _clamp(int(unix_s) - ODID_EPOCH_UNIX, 0, 0xFFFFFFFF)


def _text(value: str, size: int) -> bytes:
    return value.encode("ascii", errors="replace")[:size].ljust(size, b"\0")


def _encode_basic(m: BasicId) -> bytes:
    id_type = 0 if m.id_type is None else m.id_type
    return _BASIC.pack(
        BASIC_ID << 4 | m.version, id_type << 4 | m.ua_type, m.uas_id[:20].ljust(20, b"\0"), b"\0" * 3
    )


def _encode_location(m: Location) -> bytes:
    ew, direction = encode_direction(m.direction_deg)
    mult, speed = encode_speed_h(m.speed_h_mps)
    lat, lon = encode_latlon(m.lat, m.lon)
    ts_acc = 0 if m.timestamp_accuracy_s is None else _clamp(_round(m.timestamp_accuracy_s * 10.0), 0, 15)
    return _LOCATION.pack(
        LOCATION << 4 | m.version,
        (m.status & 0x0F) << 4 | (m.height_type & 1) << 2 | ew << 1 | mult,
        direction,
        speed,
        encode_speed_v(m.speed_v_mps),
        lat,
        lon,
        encode_altitude(m.alt_baro_m),
        encode_altitude(m.alt_geo_m),
        encode_altitude(m.height_m),
        (m.v_accuracy & 0x0F) << 4 | (m.h_accuracy & 0x0F),
        (m.baro_accuracy & 0x0F) << 4 | (m.speed_accuracy & 0x0F),
        encode_timestamp_hour(m.timestamp_s),
        ts_acc,
        0,
    )


def _encode_auth(m: Auth) -> bytes:
    head = AUTH << 4 | m.version
    bits = (m.auth_type & 0x0F) << 4 | (m.page & 0x0F)
    if m.page:
        return _AUTH_N.pack(head, bits, m.data[:23].ljust(23, b"\0"))
    return _AUTH0.pack(
        head,
        bits,
        m.last_page_index or 0,
        m.length or 0,
        _epoch2019(m.timestamp),
        m.data[:17].ljust(17, b"\0"),
    )


def _encode_self_id(m: SelfId) -> bytes:
    return _SELF_ID.pack(SELF_ID << 4 | m.version, m.desc_type & 0xFF, _text(m.description, 23))


def _encode_system(m: System) -> bytes:
    lat, lon = encode_latlon(m.operator_lat, m.operator_lon)
    return _SYSTEM.pack(
        SYSTEM << 4 | m.version,
        (m.classification_type & 0x07) << 2 | (m.operator_location_type & 0x03),
        lat,
        lon,
        _clamp(m.area_count, 0, 0xFFFF),
        _clamp(int(m.area_radius_m / 10.0), 0, 255),
        encode_altitude(m.area_ceiling_m),
        encode_altitude(m.area_floor_m),
        (m.category_eu & 0x0F) << 4 | (m.class_eu & 0x0F),
        encode_altitude(m.operator_alt_geo_m),
        _epoch2019(m.timestamp),
        0,
    )


def _encode_operator(m: OperatorId) -> bytes:
    return _OPERATOR.pack(
        OPERATOR_ID << 4 | m.version, m.operator_id_type & 0xFF, _text(m.operator_id, 20), b"\0" * 3
    )


def encode_message(message: OdidMessage) -> bytes:
    """The 25 bytes of one message, at the message's own protocol version."""
    if isinstance(message, BasicId):
        return _encode_basic(message)
    if isinstance(message, Location):
        return _encode_location(message)
    if isinstance(message, Auth):
        return _encode_auth(message)
    if isinstance(message, SelfId):
        return _encode_self_id(message)
    if isinstance(message, System):
        return _encode_system(message)
    return _encode_operator(message)


def encode_pack(messages: list[OdidMessage] | tuple[OdidMessage, ...], version: int = 2) -> bytes:
    if not 0 < len(messages) <= MAX_PACK_MESSAGES:
        raise ValueError(f"a message pack holds 1..{MAX_PACK_MESSAGES} messages, not {len(messages)}")
    return bytes((PACK << 4 | version, MESSAGE_SIZE, len(messages))) + b"".join(map(encode_message, messages))
