"""Cursor-on-Target events: every kind the node emits validates against the MITRE schemas (the
wrapper `cot-with-details.xsd` in ../shared/peers/cot, with `xmlschema`), and the mapping says
what docs/outputs.md says (uids, types from the MITRE tree, ce/le, course/speed, stale, deletion).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest

from cuas_node.kernel.reports import NodePosition
from cuas_node.outputs import cot_map
from cuas_node.outputs.cot import CotCodec, CotSettings, course_speed, horizontal_sigma_m
from cuas_node.outputs.worker import PositionItem, TracksItem
from tests.reports import binding, track

xmlschema = pytest.importorskip("xmlschema")

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
COT = PEERS / "cot"
SESSION = 1_700_000_000


@pytest.fixture(scope="module")
def schema() -> object:
    if not (COT / "cot-with-details.xsd").exists():
        pytest.skip(f"the MITRE CoT schemas are not in {COT}")
    return xmlschema.XMLSchema(str(COT / "cot-with-details.xsd"))


def codec(**changes: object) -> CotCodec:
    settings = CotSettings(
        node_id="mast-1", session=SESSION, sensor_kinds={"radar-1": "radar", "rid": "remoteid"}, **changes
    )  # type: ignore[arg-type]
    return CotCodec(settings)


def parse(frame: bytes) -> ET.Element:
    assert frame.startswith(b'<?xml version="1.0" encoding="UTF-8"?><event ')
    return ET.fromstring(frame)


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def every_kind_of_event() -> dict[str, bytes]:
    """One of each event the node sends: track (plain, coasting, Remote ID, each class), operator,
    deletion of a track and of its operator, node marker (GPS and configured position)."""
    c = codec()
    events: dict[str, bytes] = {}
    for label in cot_map.CLASS_TYPES:
        cls = dataclass_replace_label(label)
        events[f"track-{label}"] = c.track_event(track(number=10, classification=cls))
    events["coasting"] = c.track_event(track(status="coasting", vel_enu_mps=(0.0, 0.0, 0.0)))
    rid = binding(operator_lat=52.099, operator_lon=4.299, operator_id="NLD-OP-1", serial_number="SN1")
    with_rid = track(number=2, remote_id=rid, sensors=("radar-1", "rid"))
    events["track-remote-id"], events["operator"] = c.track_events(with_rid, with_rid.t)
    gone = track(number=2, status="deleted", remote_id=rid)
    events["deletion"], events["operator-deletion"] = c.track_events(gone, gone.t + 1)
    events["node-gps"] = c.node_event(NodePosition(52.1, 4.3, 40.0, "gps", 2.5), 1_700_000_000.0)
    events["node-config"] = c.node_event(NodePosition(52.1, 4.3, 40.0, "config"), 1_700_000_000.0)
    return events


def dataclass_replace_label(label: str) -> object:
    import dataclasses

    from tests.reports import CLASS

    return dataclasses.replace(CLASS, label=label)


EVENTS = every_kind_of_event()


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_every_kind_of_event_validates_against_the_mitre_schema(kind: str, schema: object) -> None:
    schema.validate(EVENTS[kind].decode())  # type: ignore[attr-defined]


def test_the_schema_check_can_fail(schema: object) -> None:
    """The peers' own invalid examples are refused, and so is an event of ours made invalid."""
    for bad in ("drone_bad.xml", "drone_badtrack.xml"):
        assert not schema.is_valid(str(COT / bad))  # type: ignore[attr-defined]
    assert schema.is_valid(str(COT / "drone_ok.xml"))  # type: ignore[attr-defined]
    broken = EVENTS["track-multirotor"].replace(b'how="m-a"', b"")
    assert not schema.is_valid(broken.decode())  # type: ignore[attr-defined]


def test_types_come_from_the_mitre_tree() -> None:
    """Every type starts `a-<affiliation>-<dimension>` with an affiliation of types.txt, and every
    class the fusion emits has a row."""
    text = (COT / "types.txt").read_text(errors="replace") if (COT / "types.txt").exists() else ""
    from cuas_node.fusion.tracks import CLASSES  # the labels the tracker emits

    assert set(CLASSES) == set(cot_map.CLASS_TYPES)
    for label in CLASSES:
        for affiliation in cot_map.AFFILIATIONS:
            type_ = cot_map.event_type(label, affiliation)
            assert re.fullmatch(r"a-[puafnshjko]-[A-Z](-[A-Z])*", type_), type_
            if text:
                assert re.search(rf"^\S*\s+{type_[2]} - ", text, re.M), (
                    f"affiliation {type_[2]} not in types.txt"
                )
    assert cot_map.event_type("multirotor", "h") == "a-h-A-M-H-Q"
    assert cot_map.event_type("fixed_wing", "u") == "a-u-A-M-F-Q"
    assert cot_map.event_type("aircraft", "h") == "a-n-A-C"  # aircraft are neutral whatever the setting
    assert cot_map.event_type("no-such-class", "s") == "a-s-A"
    if text:  # the how values used are in types.txt's how tree
        for how in ("m-a", "m-f", "m-r", "m-g", "m-c"):
            assert re.search(rf"^\s+{how[2]} - ", text, re.M), how


def test_a_track_event_carries_uid_type_position_errors_and_motion() -> None:
    report = track(
        number=7,
        vel_enu_mps=(3.0, -4.0, 1.0),
        pos_cov_enu_m2=((16.0, 0.0, 0.0), (0.0, 4.0, 0.0), (0.0, 0.0, 25.0)),
    )
    event = parse(codec(affiliation="s").track_event(report))
    assert event.get("uid") == f"cuas.mast-1.{SESSION}.7"
    assert event.get("type") == "a-s-A-M-H-Q" and event.get("how") == "m-a"
    point = event.find("point")
    assert point is not None
    assert float(point.get("lat", "")) == pytest.approx(52.1) and float(
        point.get("lon", "")
    ) == pytest.approx(4.3)
    assert float(point.get("hae", "")) == pytest.approx(61.5)
    assert float(point.get("ce", "")) == pytest.approx(4.0)  # the larger horizontal sigma
    assert float(point.get("le", "")) == pytest.approx(5.0)
    motion = event.find("detail/track")
    assert motion is not None
    assert float(motion.get("course", "")) == pytest.approx(math.degrees(math.atan2(3, -4)) % 360, abs=0.05)
    assert float(motion.get("speed", "")) == pytest.approx(5.0)
    assert float(motion.get("slope", "")) == pytest.approx(math.degrees(math.atan2(1, 5)), abs=0.05)
    assert when(event.get("time", "")) == pytest.approx(report.t, abs=1e-3)
    # stale: the tracker's coast time plus one update interval past the report
    assert when(event.get("stale", "")) == pytest.approx(report.t + 3.0 + 1.0, abs=1e-3)
    remarks = event.findtext("detail/remarks") or ""
    assert "multirotor 81%" in remarks and "radar-1" in remarks
    assert event.find("detail/contact").get("callsign") == "mast-1 T7"  # type: ignore[union-attr]


def test_remote_id_gives_the_callsign_and_an_operator_event() -> None:
    rid = binding(operator_lat=52.099, operator_lon=4.299, operator_id="NLD-OP-1")
    report = track(number=3, remote_id=rid, sensors=("rid",))
    drone, operator = (parse(f) for f in codec().track_events(report, report.t))
    assert drone.get("how") == "m-r"  # only Remote ID supports it: the drone's own GNSS, relayed
    assert drone.find("detail/contact").get("callsign") == f"UAS {rid.uas_id}"  # type: ignore[union-attr]
    assert "NLD-OP-1" in (drone.findtext("detail/remarks") or "")
    assert operator.get("uid") == f"cuas.mast-1.{SESSION}.3.operator"
    assert operator.get("type") == "a-u-G"
    assert float(operator.find("point").get("lat", "")) == pytest.approx(52.099)  # type: ignore[union-attr]


def test_rate_limit_per_track_but_status_changes_and_deletions_go_at_once() -> None:
    c = codec(track_rate_hz=1.0)
    t0 = 1_700_000_000.0
    sent = [c.track_events(track(number=1, t=t0 + dt), t0 + dt) for dt in (0.0, 0.2, 0.5, 1.0)]
    assert [len(s) for s in sent] == [1, 0, 0, 1]
    assert len(c.track_events(track(number=2, t=t0 + 0.2), t0)) == 1  # another track: its own limit
    assert len(c.track_events(track(number=1, t=t0 + 1.1, status="coasting"), t0)) == 1
    assert c.track_events(track(number=5, status="tentative"), t0) == []
    deleted = c.track_events(track(number=1, t=t0 + 1.2, status="deleted"), t0 + 1.2)
    assert len(deleted) == 1
    event = parse(deleted[0])
    assert event.get("uid") == f"cuas.mast-1.{SESSION}.1"
    assert when(event.get("stale", "")) <= when(event.get("time", ""))  # already stale
    assert c.track_events(track(number=9, status="deleted"), t0) == []  # never sent: nothing to delete


def test_the_node_marker_on_connect_on_a_move_and_periodically() -> None:
    c = codec(node_marker_interval_s=30.0)
    assert c.on_connect(100.0) == []  # position unknown yet
    frames = c.encode(PositionItem(NodePosition(52.0, 4.0, 10.0, "gps", 3.0)), 100.0)
    marker = parse(frames[0])
    assert marker.get("type") == "a-f-G-E-S" and marker.get("uid") == "cuas.mast-1"
    assert marker.get("how") == "m-g" and marker.find("point").get("ce") == "3.0"  # type: ignore[union-attr]
    assert c.periodic(110.0) == [] and len(c.periodic(130.5)) == 1
    assert len(c.on_connect(131.0)) == 1  # a new connection sees the node at once
    assert c.encode(TracksItem(0.0, ()), 131.0) == []


def test_geometry_helpers() -> None:
    assert horizontal_sigma_m(((9.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))) == pytest.approx(3.0)
    rotated = ((5.0, 4.0, 0.0), (4.0, 5.0, 0.0), (0.0, 0.0, 1.0))  # eigenvalues 9 and 1
    assert horizontal_sigma_m(rotated) == pytest.approx(3.0)
    assert course_speed((0.0, 1.0, 0.0))[0] == 0.0
    assert course_speed((-1.0, 0.0, 0.0))[0] == pytest.approx(270.0)
    assert course_speed((-1e-9, 1.0, 0.0))[0] == 0.0  # never 360.0 (the schema's bound is < 360)
    assert course_speed((0.0, 0.0, 0.0)) == (0.0, 0.0, 0.0)


def test_the_examples_in_docs_outputs_md_validate_and_are_what_the_node_sends(schema: object) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "outputs.md").read_text()
    blocks = re.findall(r"```xml\n(.*?)```", doc, re.S)
    assert len(blocks) == 7
    sent = {ET.tostring(parse(frame)) for frame in EVENTS.values()}
    for block in blocks:
        schema.validate(block)  # type: ignore[attr-defined]
        element = ET.fromstring(block.encode())
        for node in element.iter():  # the pretty-printing whitespace is not part of the event
            node.tail = None
            if node.text is not None and not node.text.strip():
                node.text = None
        assert ET.tostring(element) in sent, block


def test_tracks_whose_deletion_was_lost_are_forgotten() -> None:
    c = codec()
    t0 = 1_700_000_000.0
    c.track_events(track(number=1, t=t0), t0)
    assert c.periodic(t0 + 30.0) == [] and len(c.track_events(track(number=1, t=t0 + 30), t0)) == 1
    c.periodic(t0 + 30.0 + 3.0 + 61.0)  # long stale at every client: forgotten
    deleted = track(number=1, t=t0 + 95, status="deleted")
    assert c.track_events(deleted, t0 + 95) == []  # nothing left to delete
