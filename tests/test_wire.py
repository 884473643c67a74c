"""The wire format module: typed reports in, the documents of docs/mqtt.md out (ids, rounding,
envelopes), checked against the JSON Schemas. Every output builds its JSON here."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jsonschema
import pytest

from cuas_node.kernel.reports import AlertAck, GeoPoint, NodePosition
from cuas_node.publish import wire
from tests import reports


def test_track_record_ids_rounding_and_key_order() -> None:
    record = wire.track_record(
        reports.track(17, enu_m=(120.123456, -40.5, 55.0), lat=52.123456789, alt_m=61.456), session=3
    )
    assert list(record) == [
        "id", "status", "t", "lat", "lon", "alt_m", "enu_m", "vel_enu_mps", "pos_cov_enu_m2", "class",
        "sensors",
    ]  # fmt: skip
    assert record["id"] == "3.17"
    assert record["lat"] == 52.1234568 and record["alt_m"] == 61.46 and record["enu_m"][0] == 120.12
    assert record["class"] == {
        "label": "multirotor",
        "confidence": 0.812,
        "probabilities": {
            "multirotor": 0.812,
            "fixed_wing": 0.05,
            "bird": 0.1,
            "aircraft": 0.008,
            "unknown": 0.03,
        },
        "evidence": ["radar_kinematics", "acoustic"],
    }
    assert "bearing_only" not in record and "remote_id" not in record


def test_bearing_only_and_remote_id_are_present_only_when_known() -> None:
    record = wire.track_record(reports.track(bearing_only=True, remote_id=reports.binding()), session=1)
    assert record["bearing_only"] is True
    rid = record["remote_id"]
    assert list(rid) == [
        "uas_id", "consistency", "last_seen", "id_type", "ua_type", "reported", "offset_m", "in_coverage",
    ]  # fmt: skip
    assert rid["last_seen"] == 1_700_000_000.123 and rid["offset_m"] == 3.1
    assert rid["reported"] == {"lat": 52.1000012, "lon": 4.3000046, "alt_m": 61.46}


def test_alert_record_names_the_alert_by_track_zone_and_number_and_carries_the_ack() -> None:
    event = reports.alert("updated", number=4, serial=9)
    record = wire.alert_record(event, session=2)
    assert record["alert_id"] == "2.4@yard#9"
    assert record["zone"] == {"id": "yard", "level": "critical"}
    assert record["track"]["id"] == "2.4" and set(record["track"]) == {
        "id", "status", "lat", "lon", "alt_m", "class",
    }  # fmt: skip
    assert "ack" not in record
    acked = wire.alert_record(dataclasses.replace(event, ack=AlertAck("ops", 1_700_000_002.5, "seen")), 2)
    assert acked["ack"] == {"by": "ops", "t": 1_700_000_002.5, "note": "seen"}


def test_documents_validate_against_the_published_schemas(schemas: dict[str, dict[str, Any]]) -> None:
    tracks = [
        wire.track_record(reports.track(1), 5),
        wire.track_record(reports.track(2, "deleted", remote_id=reports.binding()), 5),
    ]
    jsonschema.validate(
        wire.tracks_message("mast-1", 1_796_280_754, 1, 1_700_000_000.3, tracks), schemas["tracks"]
    )
    record = wire.alert_record(reports.alert(), 5)
    jsonschema.validate(wire.alert_message("mast-1", 1_796_280_754, 3, record), schemas["alerts"])
    position = NodePosition(52.0, 4.3, 10.0, "gps", accuracy_m=4.5)
    info = wire.info_payload("m", 1.0, position, GeoPoint(52.0, 4.3, 9.0), [{"id": "r", "kind": "ti-mmwave"}])
    jsonschema.validate(info, schemas["info"])
    assert info["position"] == {"lat": 52.0, "lon": 4.3, "alt_m": 10.0, "source": "gps", "accuracy_m": 4.5}
    assert info["enu_origin"] == {"lat": 52.0, "lon": 4.3, "alt_m": 9.0}


def test_non_finite_numbers_are_refused_not_sent() -> None:
    with pytest.raises(ValueError):
        wire.encode(
            wire.tracks_message("m", 1, 0, 1.0, [wire.track_record(reports.track(alt_m=math.nan), 1)])
        )
