"""`cuas-node decode remoteid FILE`: one JSON object per decoded message (docs/remoteid.md).

The input format is sniffed, so that a capture can be decoded without knowing how it was made:
pcap or pcapng by their magic numbers, otherwise text lines, each taken as the node's `ODID,` line
protocol or as a drone-mesh-mapper JSON line by its first character (a log may mix both).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cuas_node.drivers.remoteid.carriers import FrameDecoder, OdidFrame
from cuas_node.drivers.remoteid.lines import MeshMapperLineParser, OdidLineParser
from cuas_node.drivers.remoteid.messages import (
    AUTH_TYPES,
    CATEGORIES_EU,
    CLASSES_EU,
    CLASSIFICATION_TYPES,
    H_ACCURACY_M,
    HEIGHT_TYPES,
    ID_TYPES,
    OPERATOR_LOCATION_TYPES,
    SELF_ID_TYPES,
    SPEED_ACCURACY_MPS,
    STATUSES,
    TEXT_ID_TYPES,
    UA_TYPES,
    V_ACCURACY_M,
    Auth,
    BasicId,
    Location,
    OdidMessage,
    SelfId,
    System,
    name_of,
    resolve_hour,
)
from cuas_node.drivers.remoteid.pcap import PCAP_MAGICS, PCAPNG_MAGIC, read_capture

_DEGREE_DIGITS = 7  # the wire resolution is 1e-7 degree


def _accuracy(table: tuple[float | None, ...], code: int) -> float | None:
    return table[code] if code < len(table) else None


def _printable_text(raw: bytes) -> str | None:
    text = raw.rstrip(b"\0")
    if text and text.isascii() and text.decode("ascii").isprintable():
        return text.decode("ascii")
    return None


def message_fields(message: OdidMessage, t_capture: float | None = None) -> dict[str, Any]:
    """The type-specific keys of one message, in SI units, invalid/unknown values left out."""
    fields: dict[str, Any]
    if isinstance(message, BasicId):
        fields = {"ua_type": name_of(UA_TYPES, message.ua_type), "id": message.id}
        if message.id_type is not None:
            fields["id_type"] = name_of(ID_TYPES, message.id_type)
            if message.id_type not in TEXT_ID_TYPES and (text := _printable_text(message.uas_id)):
                fields["id_text"] = text
    elif isinstance(message, Location):
        fields = {
            "status": name_of(STATUSES, message.status),
            "height_type": HEIGHT_TYPES[message.height_type],
            "direction_deg": message.direction_deg,
            "speed_h_mps": message.speed_h_mps,
            "speed_v_mps": message.speed_v_mps,
            "lat": None if message.lat is None else round(message.lat, _DEGREE_DIGITS),
            "lon": None if message.lon is None else round(message.lon, _DEGREE_DIGITS),
            "alt_baro_m": message.alt_baro_m,
            "alt_geo_m": message.alt_geo_m,
            "height_m": message.height_m,
            "h_accuracy_m": _accuracy(H_ACCURACY_M, message.h_accuracy),
            "v_accuracy_m": _accuracy(V_ACCURACY_M, message.v_accuracy),
            "baro_accuracy_m": _accuracy(V_ACCURACY_M, message.baro_accuracy),
            "speed_accuracy_mps": _accuracy(SPEED_ACCURACY_MPS, message.speed_accuracy),
            "timestamp_s": message.timestamp_s,
            "timestamp_accuracy_s": message.timestamp_accuracy_s,
        }
        if message.timestamp_s is not None and t_capture is not None:
            time_utc = resolve_hour(message.timestamp_s, t_capture)
            fields["time_utc"] = None if time_utc is None else round(time_utc, 1)
    elif isinstance(message, Auth):
        fields = {
            "auth_type": name_of(AUTH_TYPES, message.auth_type, private_from=10),
            "page": message.page,
            "last_page_index": message.last_page_index,
            "length": message.length,
            "timestamp": message.timestamp,
            "auth_data": message.data.hex(),
        }
    elif isinstance(message, SelfId):
        fields = {
            "desc_type": name_of(SELF_ID_TYPES, message.desc_type, private_from=201),
            "description": message.description,
        }
    elif isinstance(message, System):
        eu = message.classification_type == 1
        fields = {
            "operator_location_type": name_of(OPERATOR_LOCATION_TYPES, message.operator_location_type),
            "classification_type": name_of(CLASSIFICATION_TYPES, message.classification_type),
            "operator_lat": None if message.operator_lat is None else round(message.operator_lat, 7),
            "operator_lon": None if message.operator_lon is None else round(message.operator_lon, 7),
            "operator_alt_geo_m": message.operator_alt_geo_m,
            "area_count": message.area_count,
            "area_radius_m": message.area_radius_m,
            "area_ceiling_m": message.area_ceiling_m,
            "area_floor_m": message.area_floor_m,
            "category_eu": name_of(CATEGORIES_EU, message.category_eu) if eu else None,
            "class_eu": name_of(CLASSES_EU, message.class_eu) if eu else None,
            "timestamp": message.timestamp,
        }
    else:
        fields = {
            "operator_id_type": "operator_id"
            if message.operator_id_type == 0
            else name_of((), message.operator_id_type, private_from=201),
            "operator_id": message.operator_id,
        }
    return {k: v for k, v in fields.items() if v is not None}


def frame_to_dicts(frame: OdidFrame) -> Iterator[dict[str, Any]]:
    """The public JSON objects of one frame: one per message, each with the frame's reception data."""
    for message in frame.messages:
        out: dict[str, Any] = {"msg_type": message.msg_type}
        if frame.source != "odid":
            out["source"] = frame.source
        else:
            out["version"] = message.version
        for key, value in (
            ("carrier", frame.carrier),
            ("mac", frame.mac),
            ("rssi_dbm", frame.rssi_dbm),
            ("counter", frame.counter),
            ("t", None if frame.t is None else round(frame.t, 6)),
        ):
            if value is not None:
                out[key] = value
        out.update(message_fields(message, frame.t))
        if message.flags:
            out["flags"] = list(message.flags)
        yield out


def decode_frames(data: bytes, counts: dict[str, int] | None = None) -> Iterator[OdidFrame]:
    """Every Remote ID frame in a capture of any supported format (see the module docstring)."""
    counts = {} if counts is None else counts
    if data[:4] in PCAP_MAGICS or data[:4] == PCAPNG_MAGIC:
        decoder = FrameDecoder(counts)
        for raw in read_capture(data, counts):
            frame = decoder.frame(raw.carrier, raw.mac, raw.rssi_dbm, raw.counter, raw.payload, raw.t)
            if frame is not None:
                yield frame
        return
    odid, mesh = OdidLineParser(), MeshMapperLineParser()
    for line in data.splitlines():
        parser = mesh if line.lstrip().startswith(b"{") else odid
        yield from parser.feed(line + b"\n")
    for parser_counts in (odid.counters, mesh.counters):
        for key, value in parser_counts.items():
            counts[key] = counts.get(key, 0) + value


def decode_remoteid(data: bytes) -> Iterator[dict[str, Any]]:
    """`cuas-node decode remoteid FILE`: one dict per decoded message."""
    for frame in decode_frames(data):
        yield from frame_to_dicts(frame)
