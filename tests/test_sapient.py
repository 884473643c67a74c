"""The SAPIENT mapping without a peer: ids, the registration, status and detection reports, the
timing rules a middleware enforces, and the answers to tasks (tests/test_sapient_apex.py runs it
against the real Apex)."""

from __future__ import annotations

import itertools
import re
import struct
import uuid

import pytest

from cuas_node.config import ConfigError, build_config
from cuas_node.kernel.reports import ClassSummary, NodePosition, RemoteIdBinding, TrackReport
from cuas_node.outputs import sapient_map
from cuas_node.outputs.sapient import SapientCodec, Task, TaskAck, behaviours
from cuas_node.outputs.sapient_msgs import (
    SapientMessage,
    SapientSettings,
    SensorInfo,
    node_uuid,
    object_ulid,
    registration,
    ulid,
)
from cuas_node.outputs.worker import PositionItem, TracksItem

ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
UUID4_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SECTOR = {"type": "sector", "boresight_deg": 30.0, "half_width_deg": 60.0, "max_range_m": 400.0}


def a_report(
    number: int = 4, status: str = "confirmed", t: float = 1_800_000_000.0, **changes: object
) -> TrackReport:
    values: dict[str, object] = dict(
        number=number,
        status=status,
        t=t,
        lat=51.501,
        lon=-0.142,
        alt_m=120.0,
        enu_m=(30.0, 40.0, 60.0),
        vel_enu_mps=(-3.0, -4.0, 0.5),
        pos_cov_enu_m2=((4.0, 0.0, 0.0), (0.0, 9.0, 0.0), (0.0, 0.0, 16.0)),
        classification=ClassSummary(
            "multirotor",
            0.7,
            (("multirotor", 0.7), ("fixed_wing", 0.1), ("bird", 0.15), ("unknown", 0.05)),
            (),
        ),
        sensors=("radar-1", "rid"),
    )
    values.update(changes)
    return TrackReport(**values)  # type: ignore[arg-type]


class Wall:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def codec(wall: Wall | None = None) -> SapientCodec:
    sensors = (SensorInfo("radar-1", "radar", SECTOR), SensorInfo("rid", "remoteid", {"type": "omni"}))
    settings = SapientSettings("mast-1", node_uuid("mast-1"), 12, sensors, status_interval_s=5.0)
    return SapientCodec(settings, wall or Wall())


def decode(frames: list[bytes]) -> list[SapientMessage]:
    out = []
    for data in frames:
        (length,) = struct.unpack_from("<I", data)
        assert len(data) == 4 + length
        out.append(SapientMessage.FromString(data[4:]))
    return out


def test_ids_have_the_formats_the_standard_requires_and_are_stable() -> None:
    assert UUID4_RE.fullmatch(node_uuid("mast-1")) and node_uuid("mast-1") == node_uuid("mast-1")
    assert node_uuid("mast-1") != node_uuid("mast-2")
    assert uuid.UUID(node_uuid("mast-1")).version == 4
    first = object_ulid("mast-1", 12, 4, 1_800_000_000.0)
    assert ULID_RE.fullmatch(first) and first == object_ulid("mast-1", 12, 4, 1_800_000_000.0)
    assert (
        first
        != object_ulid("mast-1", 12, 5, 1_800_000_000.0)
        != object_ulid("mast-1", 13, 4, 1_800_000_000.0)
    )
    assert ulid(0.0, bytes(10)) == "0" * 26
    assert ulid(1_800_000_000.0)[:10] == first[:10]  # the 48-bit time comes first, as ULIDs sort


def test_every_fusion_class_has_a_taxonomy_row_declared_in_the_registration() -> None:
    from cuas_node.fusion.tracks import CLASSES

    assert set(CLASSES) == set(sapient_map.CLASS_TAXONOMY)
    reg = registration(codec().s, 0.0).registration
    declared = reg.mode_definition[0].detection_definition[0].detection_class_definition[0]
    tree = {c.type: [s.type for s in c.sub_class] for c in declared.class_definition}
    for label in CLASSES:
        top, sub = sapient_map.classification(label)
        assert top in tree and (sub is None or sub in tree[top])
    assert {n.node_type for n in reg.node_definition} == {2, 8}  # radar, passive RF: the real sensors
    assert reg.icd_version == "BSI Flex 335 v2.0"
    assert reg.status_definition.status_interval.value == 5.0


def test_a_detection_report_carries_position_errors_velocity_classes_and_behaviour() -> None:
    c = codec()
    [message] = decode(c.encode(TracksItem(0.0, (a_report(),)), 0.0))
    det = message.detection_report
    assert ULID_RE.fullmatch(det.report_id) and det.object_id == object_ulid("mast-1", 12, 4, a_report().t)
    assert message.node_id == node_uuid("mast-1")
    assert (det.location.y, det.location.x, det.location.z) == (51.501, -0.142, 120.0)
    assert det.location.y_error == pytest.approx(3.0 / 111_320.0)  # 1 sigma north, in degrees
    assert det.location.z_error == pytest.approx(4.0)
    assert (det.enu_velocity.east_rate, det.enu_velocity.north_rate) == (-3.0, -4.0)
    tops = {cls.type: cls for cls in det.classification}
    assert tops["UAV"].confidence == pytest.approx(0.8)
    assert {s.type: round(s.confidence, 3) for s in tops["UAV"].sub_class} == {
        "Rotary Wing": 0.7,
        "Fixed Wing": 0.1,
    }
    assert det.classification[0].type == "UAV"  # most probable first
    assert [b.type for b in det.behaviour] == ["Moving", "Approaching"]
    assert not det.HasField("state")


def test_behaviours_follow_the_velocity() -> None:
    assert behaviours(a_report(vel_enu_mps=(0.1, 0.2, 0.0))) == ["Hovering"]
    assert behaviours(a_report(vel_enu_mps=(3.0, 4.0, 0.0))) == ["Moving", "Receding"]
    assert behaviours(a_report(vel_enu_mps=(4.0, -3.0, 0.0))) == ["Moving"]  # tangential


def test_detections_never_go_back_in_time_and_distinct_times_are_at_least_80_ms_apart() -> None:
    wall = Wall()
    c = codec(wall)
    c.on_connect(0.0)
    stamps: list[float] = []
    sent_positions: list[float] = []
    for step in range(40):
        wall.t += 0.03  # a 33 Hz fusion: faster than the peer admits
        reports = (a_report(4, lat=51.0 + step * 1e-5), a_report(5, lat=52.0 + step * 1e-5))
        for m in decode(c.encode(TracksItem(wall.t, reports), wall.t)):
            if m.WhichOneof("content") == "detection_report":
                stamps.append(m.timestamp.ToNanoseconds() / 1e9)
                sent_positions.append(m.detection_report.location.y)
                assert stamps[-1] - wall.t <= 0.05 + 1e-6  # never far ahead of the clock
    distinct = sorted(set(stamps))
    assert stamps == sorted(stamps) and len(distinct) >= 10
    assert all(b - a >= 0.08 - 1e-6 for a, b in itertools.pairwise(distinct))
    assert sent_positions[-1] == pytest.approx(52.0 + 39e-5) or sent_positions[-2] == pytest.approx(
        52.0 + 39e-5
    )


def test_a_deletion_is_a_lost_report_of_the_same_object_and_tentative_tracks_are_not_sent() -> None:
    wall = Wall()
    c = codec(wall)
    assert c.encode(TracksItem(0.0, (a_report(9, "tentative"),)), 0.0) == []
    [first] = decode(c.encode(TracksItem(0.0, (a_report(4),)), 0.0))
    wall.t += 1.0
    [gone] = decode(c.encode(TracksItem(0.0, (a_report(4, "deleted"),)), 0.0))
    assert gone.detection_report.state == "lost"
    assert gone.detection_report.object_id == first.detection_report.object_id
    wall.t += 1.0
    assert c.encode(TracksItem(0.0, (a_report(9, "deleted"),)), 0.0) == []  # never sent: nothing to delete


def test_status_reports_the_node_location_and_each_sensors_coverage() -> None:
    wall = Wall()
    c = codec(wall)
    [first] = decode(c.on_connect(0.0))
    assert first.status_report.system == first.status_report.SYSTEM_WARNING  # no position yet
    [moved] = decode(c.encode(PositionItem(NodePosition(51.5, -0.14, 30.0, "gps", 3.0)), 0.0))
    status = moved.status_report
    assert status.system == status.SYSTEM_OK and status.mode == "default" and status.info == status.INFO_NEW
    assert (status.node_location.y, status.node_location.x) == (51.5, -0.14)
    cones = [c.range_bearing for c in status.coverage]
    assert [(k.azimuth, k.horizontal_extent, k.range) for k in cones[:1]] == [(30.0, 120.0, 400.0)]
    assert (
        cones[1].horizontal_extent == 360.0 and status.field_of_view.range_bearing.horizontal_extent == 360.0
    )
    assert c.periodic(0.0) == []  # not due yet
    wall.t += 5.0
    [again] = decode(c.periodic(0.0))
    assert again.status_report.info == again.status_report.INFO_UNCHANGED


def a_task(**command: str) -> SapientMessage:
    message = SapientMessage(node_id=str(uuid.uuid4()), destination_id=node_uuid("mast-1"))
    message.task.task_id = ulid(1_800_000_000.0)
    message.task.control = Task.CONTROL_START
    for key, value in command.items():
        setattr(message.task.command, key, value)
    return message


@pytest.mark.parametrize(
    ("command", "accepted", "reason"),
    [
        ({"request": "Status"}, True, ""),
        ({"mode_change": "default"}, True, ""),
        ({"mode_change": "night"}, False, "unknown mode 'night'"),
        ({"request": "Reset"}, False, "unsupported request 'Reset'"),
        ({"command_parameter": "x"}, False, "no command"),
    ],
)
def test_tasks_are_accepted_when_the_node_can_do_them_and_rejected_with_a_reason(
    command: dict[str, str], accepted: bool, reason: str
) -> None:
    task = a_task(**command)
    replies = decode(codec().handle(task))
    ack = replies[0]
    assert ack.task_ack.task_id == task.task.task_id and ack.destination_id == task.node_id
    status = TaskAck.TASK_STATUS_ACCEPTED if accepted else TaskAck.TASK_STATUS_REJECTED
    assert ack.task_ack.task_status == status
    assert (reason in " ".join(ack.task_ack.reason)) and (bool(ack.task_ack.reason) != accepted)
    if command.get("request") == "Status":
        assert replies[1].WhichOneof("content") == "status_report"


def test_pointing_and_regions_are_rejected() -> None:
    task = a_task()
    task.task.command.look_at.range_bearing.azimuth = 10.0
    [ack] = decode(codec().handle(task))
    assert ack.task_ack.task_status == TaskAck.TASK_STATUS_REJECTED and "look_at" in ack.task_ack.reason[0]
    task = a_task(request="Status")
    task.task.region.add(region_name="r")
    [ack] = decode(codec().handle(task))
    assert "regions" in ack.task_ack.reason[0]


def test_remote_id_names_the_object() -> None:
    rid = RemoteIdBinding("1581F5FJD2", "consistent", 0.0, 51.5, -0.14, 120.0, 2.0, True)
    [m] = decode(codec().encode(TracksItem(0.0, (a_report(remote_id=rid),)), 0.0))
    assert m.detection_report.id == "1581F5FJD2"


def test_config_checks_the_node_id_and_tls_files() -> None:
    base = {"node": {"id": "mast-1"}}
    section = {"host": "apex.local", "port": 15020}
    config = build_config({**base, "outputs": {"sapient": section}}, "test")
    assert config.outputs.sapient is not None and config.outputs.sapient.node_id is None
    with pytest.raises(ConfigError, match="node_id"):
        build_config(
            {**base, "outputs": {"sapient": {**section, "node_id": "2008894A-D5B3-4DF3-A22E-A48CAA701AD6"}}},
            "test",
        )
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file go together"):
        build_config(
            {**base, "outputs": {"sapient": {**section, "tls": True, "tls_cert_file": "/x"}}}, "test"
        )


def test_a_track_whose_deletion_was_lost_is_forgotten() -> None:
    """A track silent for minutes (its deletion dropped) is forgotten: a late deletion finds no
    object to end; one silent for seconds still gets its `lost` report."""
    for silent_s, reports in ((10.0, 1), (400.0, 0)):
        wall = Wall()
        c = codec(wall)
        c.encode(TracksItem(0.0, (a_report(4),)), 0.0)
        wall.t += silent_s
        c.periodic(0.0)
        assert len(c.encode(TracksItem(0.0, (a_report(4, "deleted"),)), 0.0)) == reports


def test_a_clean_stop_sends_held_detections_then_a_goodbye() -> None:
    wall = Wall()
    c = codec(wall)
    c.on_connect(0.0)
    c.encode(PositionItem(NodePosition(51.5, -0.14, 30.0, "gps", 3.0)), 0.0)
    [first] = decode(c.encode(TracksItem(wall.t, (a_report(t=wall.t),)), 0.0))
    wall.t += 0.01  # too soon for another detection: held
    assert c.encode(TracksItem(wall.t, (a_report(t=wall.t),)), 0.0) == []
    wall.t += 0.03  # the stop comes once the spacing allows it (stamped 0.08 s after the first)
    held, goodbye = decode(c.on_stop(0.0))
    assert held.timestamp.ToNanoseconds() - first.timestamp.ToNanoseconds() == pytest.approx(8e7, abs=1e3)
    assert held.detection_report.object_id == first.detection_report.object_id
    status = goodbye.status_report
    assert status.system == status.SYSTEM_GOODBYE and status.info == status.INFO_NEW
    assert status.mode == "default" and ULID_RE.fullmatch(status.report_id)
    assert goodbye.node_id == node_uuid("mast-1")
