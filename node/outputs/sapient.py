"""SAPIENT (BSI Flex 335 v2.0) reports from the node's typed track reports (docs/outputs.md).

Sans-IO: `SapientCodec` turns reports into framed `SapientMessage`s and answers the peer's tasks;
the transport (and the registration handshake) is `sapient_link`. After the registration is
acknowledged: a `status_report` at once and every `status_interval_s` (system state, mode, node
location, each sensor's coverage), and one `detection_report` per update of a confirmed or
coasting track (a deletion as a last report with state `lost`); on a clean stop a status report
with system GOODBYE before the connection closes.

Timing, as a middleware checks it (Apex): a message's timestamp is the wall clock when it is sent
(the peer rejects one more than 0.9 s old or 0.1 s ahead of its clock); detection reports on a
connection never go back in time and distinct detection times are at least 0.08 s apart. The
reports of one fusion step share one timestamp (one frame of the sensor); a step that comes sooner
than 0.08 s after the last one sent waits, merged per track (the newest report of each track
wins), until the next step or the next status tick, so nothing but superseded updates is lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime

from sapient_msg.bsi_flex_335_v2_0 import status_report_pb2, task_ack_pb2, task_pb2

from cuas_node.kernel.reports import NodePosition, TrackReport
from cuas_node.outputs import sapient_map
from cuas_node.outputs.sapient_msgs import (
    SapientMessage,
    SapientSettings,
    coverage_cone,
    detecting,
    envelope,
    frame,
    geo_location,
    object_ulid,
    registration,
    ulid,
)
from cuas_node.outputs.worker import Item, PositionItem, TracksItem

log = logging.getLogger(__name__)

StatusReport = status_report_pb2.StatusReport
Task = task_pb2.Task
TaskAck = task_ack_pb2.TaskAck

DETECTION_GAP_S = 0.08  # the least time between two distinct detection timestamps
FUTURE_SLACK_S = 0.05  # how far ahead of the wall clock a detection may be stamped (peer allows 0.1)
FORGET_S = 300.0  # a track silent this long (its deletion lost) is forgotten


def iso_time(t: float) -> str:
    """The time of the track state (the message timestamp is when it was sent): ISO 8601 UTC."""
    stamp = datetime.fromtimestamp(t, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def behaviours(report: TrackReport) -> list[str]:
    """`Hovering` or `Moving` from the ground speed, plus `Approaching`/`Receding` from the radial
    speed relative to the node (the fusion frame's origin)."""
    ve, vn, _ = report.vel_enu_mps
    speed = math.hypot(ve, vn)
    found = ["Hovering" if speed < sapient_map.HOVER_SPEED_MPS else "Moving"]
    east, north, _ = report.enu_m
    distance = math.hypot(east, north)
    if distance > 1.0:
        radial = (ve * east + vn * north) / distance
        if radial < -sapient_map.RADIAL_SPEED_MPS:
            found.append("Approaching")
        elif radial > sapient_map.RADIAL_SPEED_MPS:
            found.append("Receding")
    return found


class SapientCodec:
    """The output thread's SAPIENT mapper. `wall` is the wall clock (epoch seconds) the peer
    compares message timestamps with; the worker's `now` may be a simulation's clock."""

    def __init__(self, settings: SapientSettings, wall: Callable[[], float]) -> None:
        self.s = settings
        self.wall = wall
        self._objects: dict[int, str] = {}  # track number -> object ULID (for the codec's life)
        self._seen: dict[int, float] = {}  # track number -> wall time of its last report
        self._sent: set[int] = set()  # tracks with a detection report on this connection
        self._pending: dict[int, TrackReport] = {}
        self._last_detection: float | None = None
        self._position: NodePosition | None = None
        self._status_due = -math.inf
        self._status_new = True
        self.task_acks = 0

    # -- the link's calls ------------------------------------------------------------------

    def registration(self) -> bytes:
        return frame(registration(self.s, self.wall()))

    def handle(self, message: SapientMessage) -> list[bytes]:
        """A message from the peer: a task gets its task_ack (and what it asked for); an error is
        logged (the peer refused one of our messages); anything else needs no answer."""
        content = message.WhichOneof("content")
        if content == "task":
            return self.answer_task(message)
        if content == "error":
            log.warning("SAPIENT peer reports an error: %s", "; ".join(message.error.error_message))
        return []

    # -- the worker's calls ----------------------------------------------------------------

    def on_connect(self, now: float) -> list[bytes]:
        """Registered on a new connection: a status report at once; the peer's detection-time
        check starts afresh, and every live track is new to it."""
        self._last_detection = None
        self._sent.clear()
        self._status_due = -math.inf
        self._status_new = True
        return self.periodic(now)

    def periodic(self, now: float) -> list[bytes]:
        frames = self._flush()
        wall = self.wall()
        # A track whose deletion never came (dropped from a full queue) is forgotten once it has
        # been silent for FORGET_S, so this state cannot grow without bound.
        for number in [n for n, seen in self._seen.items() if seen < wall - FORGET_S]:
            self._seen.pop(number, None)
            self._objects.pop(number, None)
            self._sent.discard(number)
        if wall >= self._status_due:
            self._status_due = wall + self.s.status_interval_s
            frames.append(frame(self.status_report(wall)))
        return frames

    def on_stop(self, now: float) -> list[bytes]:
        """A clean stop: the detections still held (if the detection spacing lets them go now),
        then a status report with system GOODBYE
        (BSI Flex 335 v2.0: "the system is about to disconnect"), so the peer knows the node left
        on purpose rather than failed. It is a NEW report: its system differs from the last one."""
        frames = self._flush()
        wall = self.wall()
        message = self.status_report(wall)
        message.status_report.system = StatusReport.SYSTEM_GOODBYE
        message.status_report.info = StatusReport.INFO_NEW
        self._status_new = True
        frames.append(frame(message))
        return frames

    def encode(self, item: Item, now: float) -> list[bytes]:
        if isinstance(item, PositionItem):
            self._position = item.position
            self._status_due = -math.inf  # the peer learns the new place at once
            self._status_new = True
            return self.periodic(now)
        assert isinstance(item, TracksItem)
        for report in item.tracks:
            if report.live or (report.status == "deleted" and report.number in self._objects):
                self._pending[report.number] = report
                self._seen[report.number] = self.wall()
                if report.number not in self._objects:
                    self._objects[report.number] = object_ulid(
                        self.s.node_id, self.s.session, report.number, report.t
                    )
        return self._flush()

    # -- detections ------------------------------------------------------------------------

    def _flush(self) -> list[bytes]:
        if not self._pending:
            return []
        wall = self.wall()
        stamp = wall
        if self._last_detection is not None and stamp < self._last_detection + DETECTION_GAP_S:
            stamp = self._last_detection + DETECTION_GAP_S
            if stamp > wall + FUTURE_SLACK_S:
                return []  # too soon after the last step: wait, merged per track
        self._last_detection = stamp
        frames: list[bytes] = []
        for number, report in self._pending.items():
            if report.status == "deleted":
                if number not in self._sent:
                    self._objects.pop(number, None)
                    self._seen.pop(number, None)
                    continue  # the peer never heard of it on this connection
                self._sent.discard(number)
            else:
                self._sent.add(number)
            frames.append(frame(self.detection_report(report, stamp)))
            if report.status == "deleted":
                self._objects.pop(number, None)
                self._seen.pop(number, None)
        self._pending.clear()
        return frames

    def object_id(self, report: TrackReport) -> str:
        found = self._objects.get(report.number)
        return found or object_ulid(self.s.node_id, self.s.session, report.number, report.t)

    def detection_report(self, report: TrackReport, wall: float) -> SapientMessage:
        message = envelope(self.s, wall)
        det = message.detection_report
        det.report_id = ulid(wall)
        det.object_id = self.object_id(report)
        if report.status != "confirmed":
            det.state = "lost" if report.status == "deleted" else report.status
        cov = report.pos_cov_enu_m2
        sigmas = tuple(math.sqrt(max(cov[i][i], 0.0)) for i in range(3))
        det.location.CopyFrom(geo_location(report.lat, report.lon, report.alt_m, sigmas))  # type: ignore[arg-type]
        ve, vn, vu = report.vel_enu_mps
        det.enu_velocity.east_rate, det.enu_velocity.north_rate, det.enu_velocity.up_rate = ve, vn, vu
        for top, confidence, subs in self.classes(report):
            cls = det.classification.add(type=top, confidence=confidence)
            for sub, p in subs:
                cls.sub_class.add(type=sub, confidence=p, level=1)
        for behaviour in behaviours(report):
            det.behaviour.add(type=behaviour)
        det.track_info.add(type="sensors", value=",".join(report.sensors))
        det.track_info.add(type="status", value=det.state or "confirmed")
        det.track_info.add(type="track_time", value=iso_time(report.t))
        if report.bearing_only:  # the range is the tracker's guess; the errors say how poor
            det.track_info.add(type="bearing_only", value="true")
        if report.remote_id is not None:
            det.id = report.remote_id.uas_id
        return message

    @staticmethod
    def classes(report: TrackReport) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """The posterior over the node's labels folded into the SAPIENT taxonomy: each top class
        with the summed probability of its labels, and its sub-classes; most probable first."""
        tops: dict[str, float] = {}
        subs: dict[str, dict[str, float]] = {}
        probabilities = report.classification.probabilities or (
            (report.classification.label, report.classification.confidence),
        )
        for label, p in probabilities:
            top, sub = sapient_map.classification(label)
            tops[top] = tops.get(top, 0.0) + p
            if sub is not None:
                subs.setdefault(top, {})[sub] = subs.get(top, {}).get(sub, 0.0) + p
        ranked = sorted(tops.items(), key=lambda kv: -kv[1])
        return [
            (
                top,
                round(min(max(p, 0.0), 1.0), 4),
                [(s, round(min(q, 1.0), 4)) for s, q in subs.get(top, {}).items()],
            )
            for top, p in ranked
            if p > 0.0
        ]

    # -- status ----------------------------------------------------------------------------

    def status_report(self, wall: float) -> SapientMessage:
        message = envelope(self.s, wall)
        status = message.status_report
        status.report_id = ulid(wall)
        status.info = StatusReport.INFO_NEW if self._status_new else StatusReport.INFO_UNCHANGED
        self._status_new = False
        status.mode = sapient_map.MODE
        status.system = StatusReport.SYSTEM_OK
        if self._position is not None:
            accuracy = self._position.accuracy_m
            sigmas = (accuracy, accuracy, accuracy) if accuracy is not None else None
            p = self._position
            status.node_location.CopyFrom(geo_location(p.lat, p.lon, p.alt_m, sigmas))
        else:
            status.system = StatusReport.SYSTEM_WARNING
            status.status.add(
                status_level=StatusReport.STATUS_LEVEL_WARNING_STATUS,
                status_type=StatusReport.STATUS_TYPE_OTHER,
                status_value="node position unknown",
            )
        cones = [c for c in (coverage_cone(s.coverage) for s in detecting(self.s)) if c is not None]
        for cone in cones:
            status.coverage.add().range_bearing.CopyFrom(cone)
        if cones:
            widest = max(cones, key=lambda c: c.horizontal_extent)
            if len(cones) > 1 and widest.horizontal_extent < 360.0:
                widest = type(widest)()
                widest.CopyFrom(cones[0])
                widest.azimuth, widest.horizontal_extent = 0.0, 360.0
                widest.ClearField("range")
            status.field_of_view.range_bearing.CopyFrom(widest)
        else:
            status.status.add(
                status_level=StatusReport.STATUS_LEVEL_WARNING_STATUS,
                status_type=StatusReport.STATUS_TYPE_NOT_DETECTING,
                status_value="no detecting sensor is configured",
            )
        return message

    # -- tasks -----------------------------------------------------------------------------

    def task_verdict(self, task: Task) -> tuple[bool, str]:
        """(accepted, reason): what the node can do is a `Status` request and a change to its one
        mode; regions, thresholds, pointing and movement it cannot do."""
        if task.control != Task.CONTROL_START:
            return False, "the node runs no lasting tasks: only CONTROL_START of an immediate command"
        if len(task.region) > 0:
            return False, "the node does not support task regions"
        which = task.command.WhichOneof("command") if task.HasField("command") else None
        if which is None:
            return False, "the task has no command"
        if which == "request":
            if task.command.request in sapient_map.SUPPORTED_REQUESTS:
                return True, ""
            supported = ", ".join(sapient_map.SUPPORTED_REQUESTS)
            return False, f"unsupported request {task.command.request!r} (supported: {supported})"
        if which == "mode_change":
            if task.command.mode_change == sapient_map.MODE:
                return True, ""
            return (
                False,
                f"unknown mode {task.command.mode_change!r}: the node has one mode, {sapient_map.MODE!r}",
            )
        return False, f"the node does not support {which} commands"

    def answer_task(self, message: SapientMessage) -> list[bytes]:
        task = message.task
        accepted, reason = self.task_verdict(task)
        wall = self.wall()
        sender = message.node_id if message.HasField("node_id") else None
        reply = envelope(self.s, wall, sender)
        ack = reply.task_ack
        ack.task_id = task.task_id
        ack.task_status = TaskAck.TASK_STATUS_ACCEPTED if accepted else TaskAck.TASK_STATUS_REJECTED
        if reason:
            ack.reason.append(reason)
        log.info(
            "SAPIENT task %s %s%s",
            task.task_id,
            "accepted" if accepted else "rejected",
            f": {reason}" * bool(reason),
        )
        self.task_acks += 1
        frames = [frame(reply)]
        if accepted and task.command.WhichOneof("command") == "request":
            self._status_new = True
            self._status_due = wall + self.s.status_interval_s
            frames.append(frame(self.status_report(wall)))
        return frames
