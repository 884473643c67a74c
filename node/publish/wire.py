"""The wire format, in one place: topic names, JSON encoding, identifiers, rounding and envelopes
of every document the node sends (docs/mqtt.md is the contract, docs/schemas/ the schemas).

Pure functions with no connection state: the MQTT publisher, its outbox and connector, replay's
JSON lines and any other output build every message the same way, and tests check the documents
without a broker. The core hands over typed reports (`cuas_node.kernel.reports`) in full precision;
only here do they become strings and rounded numbers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cuas_node import SCHEMA_VERSION, __version__
from cuas_node.kernel.reports import (
    AlertEvent,
    AlertKey,
    ClassSummary,
    GeoPoint,
    NodePosition,
    RemoteIdBinding,
    TrackReport,
)

BROKER_STATES = ("connected", "disconnected", "auth_refused", "tls_error", "acl_refused")


def topic(root: str, node_id: str, name: str) -> str:
    """`cuas/v1` + `mast-1` + `tracks` → `cuas/v1/mast-1/tracks`."""
    return f"{root.rstrip('/')}/{node_id}/{name}"


def dumps(payload: Mapping[str, Any]) -> str:
    """Compact JSON; NaN/Infinity are refused because they are not JSON (consumers would choke)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def encode(payload: Mapping[str, Any]) -> bytes:
    return dumps(payload).encode()


# -- identifiers -------------------------------------------------------------------------------


def track_id(session: int, number: int) -> str:
    """`<session>.<number>`: unique per node, never reused across restarts (the session grows)."""
    return f"{session}.{number}"


def alert_id(session: int, key: AlertKey) -> str:
    """`<track id>@<zone id>#<n>`: one alert of one track in one zone."""
    return f"{track_id(session, key.track_number)}@{key.zone_id}#{key.serial}"


# -- records -----------------------------------------------------------------------------------


def _r(values: Sequence[float], digits: int) -> list[float]:
    return [round(float(v), digits) for v in values]


def class_record(summary: ClassSummary) -> dict[str, Any]:
    return {
        "label": summary.label,
        "confidence": round(summary.confidence, 3),
        "probabilities": {name: round(p, 3) for name, p in summary.probabilities},
        "evidence": list(summary.evidence),
    }


_IDENTITY_FIELDS = (
    "id_type", "ua_type", "operator_id", "serial_number", "registration_id", "operator_lat",
    "operator_lon", "carrier", "rssi_dbm",
)  # fmt: skip


def remote_id_record(binding: RemoteIdBinding) -> dict[str, Any]:
    out: dict[str, Any] = {
        "uas_id": binding.uas_id,
        "consistency": binding.consistency,
        "last_seen": round(binding.last_seen, 3),
    }
    for key in _IDENTITY_FIELDS:
        value = getattr(binding, key)
        if value is not None:
            out[key] = value
    out["reported"] = {
        "lat": round(binding.reported_lat, 7),
        "lon": round(binding.reported_lon, 7),
        "alt_m": round(binding.reported_alt_m, 2),
    }
    out["offset_m"] = round(binding.offset_m, 1)
    out["in_coverage"] = binding.in_coverage
    return out


def track_record(report: TrackReport, session: int) -> dict[str, Any]:
    """One element of a `tracks` message's `tracks` array."""
    record: dict[str, Any] = {
        "id": track_id(session, report.number),
        "status": report.status,
        "t": round(report.t, 3),
        "lat": round(report.lat, 7),
        "lon": round(report.lon, 7),
        "alt_m": round(report.alt_m, 2),
        "enu_m": _r(report.enu_m, 2),
        "vel_enu_mps": _r(report.vel_enu_mps, 2),
        "pos_cov_enu_m2": [_r(row, 3) for row in report.pos_cov_enu_m2],
        "class": class_record(report.classification),
        "sensors": list(report.sensors),
    }
    if report.bearing_only:
        record["bearing_only"] = True
    if report.remote_id is not None:
        record["remote_id"] = remote_id_record(report.remote_id)
    return record


def alert_record(event: AlertEvent, session: int) -> dict[str, Any]:
    """An alert event as published on `alerts` (without the envelope)."""
    record: dict[str, Any] = {
        "alert_id": alert_id(session, event.key),
        "state": event.state,
        "t": round(event.t, 3),
        "since": round(event.since, 3),
        "zone": {"id": event.key.zone_id, "level": event.zone_level},
        "evidence": event.evidence,
    }
    if event.track is not None:
        tr = track_record(event.track, session)
        record["track"] = {k: tr[k] for k in ("id", "status", "lat", "lon", "alt_m", "class")}
    if event.ack is not None:
        ack: dict[str, Any] = {"by": event.ack.by, "t": round(event.ack.t, 3)}
        if event.ack.note:
            ack["note"] = event.ack.note
        record["ack"] = ack
    return record


def point_record(point: GeoPoint | NodePosition) -> dict[str, Any]:
    return {"lat": round(point.lat, 7), "lon": round(point.lon, 7), "alt_m": round(point.alt_m, 2)}


def position_record(position: NodePosition) -> dict[str, Any]:
    record = point_record(position)
    record["source"] = position.source
    if position.accuracy_m is not None:
        record["accuracy_m"] = round(position.accuracy_m, 2)
    return record


def measurement_record(m: Any) -> dict[str, Any]:
    """A measurement as one JSON line of `replay` (the measurement contract's own fields)."""
    out: dict[str, Any] = {"type": "measurement", "kind": type(m).__name__}
    out.update(dataclasses.asdict(m))
    return out


# -- documents (envelopes) ---------------------------------------------------------------------


def tracks_message(
    node_id: str, session: int, seq: int, t: float, records: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"type": "tracks", "node_id": node_id, "session": session, "seq": seq, "t": t, "tracks": records}


def alert_message(node_id: str, session: int, seq: int, record: Mapping[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "alert", "node_id": node_id, "session": session, "seq": seq}
    message.update(record)
    return message


def status_payload(state: str, t: float, session: int) -> dict[str, Any]:
    """The retained `status` document (`online` on connect; `offline` as goodbye and Last Will)."""
    return {"type": "status", "state": state, "t": t, "session": session}


def info_payload(
    node_id: str,
    t: float,
    position: NodePosition | None,
    origin: GeoPoint | None,
    sensors: list[dict[str, str]],
) -> dict[str, Any]:
    """The retained `info` document: who the node is, where it stands (`position`, which follows
    GPS), where its tracks' `enu_m` frame is pinned (`enu_origin`, fixed for the run), and what
    it senses."""
    info: dict[str, Any] = {
        "type": "info",
        "node_id": node_id,
        "software_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "t": t,
    }
    if position is not None:
        info["position"] = position_record(position)
    if origin is not None:
        info["enu_origin"] = point_record(origin)
    info["sensors"] = list(sensors)
    return info
