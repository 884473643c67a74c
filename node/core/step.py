"""`NodeCore`: the one definition of a fusion cycle.

`step(now, batch)` takes the measurements that arrived since the last step and the time, and
returns what the cycle produced: the track reports of a `tracks` message when one is due, the zone
alert events that go with it, and the node's position when it changed. It is single-threaded and
deterministic given its inputs, so the runtime (threads and a queue around it), `replay` and `eval`
(virtual time), the golden tests and the benchmarks all run exactly the code that runs on the Pi.

What it owns around fusion: the reorder window (`reorder.py`), the publication rate limit
(`tracks_max_rate_hz`: fusion runs every cycle, but a `tracks` message at most this often, and only
when something changed) and the zone alert lifecycle with acknowledgements (`zones.py`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cuas_node.core.reorder import ReorderBuffer
from cuas_node.core.zones import AlertMonitor, ZoneSpec, build_zones
from cuas_node.fusion.engine import FusionCounters, FusionEngine
from cuas_node.fusion.frame_stamps import FrameStamps
from cuas_node.fusion.params import FusionSetup
from cuas_node.fusion.tracks import Status
from cuas_node.fusion.verdicts import WINDOW_S, RecentVerdicts
from cuas_node.kernel.clock import STEP_S
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import (
    REMOTE_ID_SKEW_S,
    AnyMeasurement,
    GpsFix,
    RemoteIdReport,
    saw_something,
)
from cuas_node.kernel.reports import AlertAck, AlertEvent, AlertKey, GeoPoint, NodePosition, TrackReport

RATE_SLACK_S = 1e-4  # far above float rounding of epoch times, far below any cycle


@dataclass(frozen=True, slots=True)
class CoreParams:
    """`reorder_window_s`, `alert_update_s`, `alert_clear_s`, `rid_only_alerts_per_min` ([fusion]);
    `tracks_max_rate_hz` ([mqtt])."""

    reorder_window_s: float = 0.1
    tracks_max_rate_hz: float = 5.0
    alert_update_s: float = 5.0
    alert_clear_s: float = 2.0
    rid_only_alerts_per_min: float = 6.0


@dataclass(frozen=True)
class CoreSetup:
    fusion: FusionSetup
    params: CoreParams = CoreParams()
    zones: tuple[ZoneSpec, ...] = ()


@dataclass(frozen=True)
class StepResult:
    """What one cycle produced. `tracks` is None when no `tracks` message is due (nothing changed,
    or the rate limit holds it back); `alerts` come only with a `tracks` message. `position` (the
    node's, as last published) and `origin` (of the ENU frame) go to `info`; `position_changed`
    says that either changed materially this step (`moved_materially`)."""

    t: float
    tracks: tuple[TrackReport, ...] | None = None
    alerts: tuple[AlertEvent, ...] = ()
    position: NodePosition | None = None
    origin: GeoPoint | None = None
    position_changed: bool = False


def moved_materially(new: NodePosition | None, old: NodePosition | None) -> bool:
    """Whether `info` must be republished: the position appeared or vanished, its source changed,
    or it moved by more than its own uncertainty (a GPS mean settling over its first fixes jitters
    by centimetres; consumers need not hear of it). Vertical: 1.5 times the horizontal tolerance,
    as GNSS height is that much worse than its horizontal position."""
    if new is None or old is None or new.source != old.source:
        return new != old
    tolerance = max(new.accuracy_m or 0.0, old.accuracy_m or 0.0)
    if tolerance == 0.0:
        return (new.lat, new.lon, new.alt_m) != (old.lat, old.lon, old.alt_m)
    e, n, u = LocalFrame(old.lat, old.lon, old.alt_m).to_enu(new.lat, new.lon, new.alt_m)
    return bool(math.hypot(e, n) > tolerance or abs(u) > 1.5 * tolerance)


@dataclass(frozen=True)
class FusionStatus:
    """The fusion part of the `health` message: tracks by status, initiations refused for lack of
    room, measurements that arrived after their turn (`late`) and held in the reorder window,
    those fusion could not use (`dropped`, by reason), the places learnt as radar fixtures
    (`fixtures_learnt`), those where a radar gives several plots a scan now (`clutter_spots`),
    and the tracks whose range moved at a speed their radar's range-rate contradicted
    (`range_rate_contradicted`: a wrapping radar configured without its span)."""

    confirmed: int
    coasting: int
    tentative: int
    births_refused: int
    births_pruned: int
    cycle_ms: float
    late: int
    held: int
    remote_id: dict[str, object] = dataclasses.field(default_factory=dict)
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    without_range_rate: int = 0
    outside_coverage: int = 0
    fixtures_learnt: int = 0
    clutter_spots: int = 0
    range_rate_contradicted: int = 0
    stale_sensors: dict[str, float] = dataclasses.field(default_factory=dict)
    """Sensors most of whose recent scans fusion dropped as stale, each with how far behind the
    newest scan they were captured (s): health shows them `degraded` (`health_report.sensor_state`)."""
    ahead_sensors: dict[str, float] = dataclasses.field(default_factory=dict)
    """Sensors most of whose recent measurements were dropped as `captured_after_now`, each with
    how far ahead of the node's clock they were stamped (s): `degraded` too."""


class NodeCore:
    def __init__(self, setup: CoreSetup) -> None:
        self.engine = FusionEngine(setup.fusion)
        self.params = setup.params
        self.reorder = ReorderBuffer(setup.params.reorder_window_s, self.engine.capture_time)
        self.frame_stamps = FrameStamps(setup.fusion.sensors)  # one time a frame (`frame_stamps`)
        self._zones = tuple(setup.zones)
        self.alerts: AlertMonitor | None = None
        self._pending_alerts: list[AlertEvent] = []
        self._last_tracks = -math.inf
        self._position = self.engine.node_position()
        self._origin = self.engine.origin()
        self.now = -math.inf
        self.cycle_ms = 0.0
        self.clock_steps = 0
        self._retired: list[TrackReport] = []  # deletions to publish before the fresh engine's tracks
        self._ahead = RecentVerdicts()  # each sensor's stamps against `now` (`_captured_by`)
        self._stepped_from = (-math.inf, -math.inf)  # (the old clock's time, the new's) at a step back
        self._last_stamp: dict[str, float] = {}  # each sensor's last stamp judged: a frame counts once

    # -- the step ----------------------------------------------------------------------------
    def step(self, now: float, batch: Sequence[AnyMeasurement] = ()) -> StepResult:
        """One cycle at time `now` with the measurements that arrived since the last one."""
        started = time.perf_counter()
        if now < self.now - STEP_S:
            batch = [*self._clock_stepped_back(now), *batch]
        if batch:
            self.engine.fuse(self.reorder.push(self._captured_by(now, batch)), now)
        return self._cycle(now, started, final=False)

    def finish(self, now: float, batch: Sequence[AnyMeasurement] = ()) -> StepResult:
        """End of input (a clean stop, the end of a replay): fuse `batch` and everything still held
        and report whatever changed, without waiting for the rate limit."""
        started = time.perf_counter()
        if now < self.now - STEP_S:
            batch = [*self._clock_stepped_back(now), *batch]
        self.reorder.push(self._captured_by(now, batch))
        self.engine.fuse(self.reorder.release(math.inf), now)
        self.engine.settle()
        return self._cycle(now, started, final=True)

    def _clock_stepped_back(self, now: float) -> list[AnyMeasurement]:
        """The wall clock went back (by more than `STEP_S`). Every track's state, the rate
        limit and the reorder window lie in the new clock's future: left as they are, each new
        measurement would be late by the step, no track updated or deleted, and no `tracks`
        message sent until the clock caught up (an hour back: an hour of silence). So every
        published track is deleted in the next message (its zone alerts cleared with it), fusion
        starts afresh on the new time base (`FusionEngine.successor`: ids go on, the position and
        counters are kept). What the window held from before the step is dropped
        (`captured_after_now`), but for GPS fixes (returned, to be fused on the new clock: their
        time is the satellites', and fusion uses only their position)."""
        self.clock_steps += 1
        self._ahead = self._ahead.restarted(self.now)
        self._stepped_from = (self.now, now)
        self._retired += self.engine.retire_all()
        held = self.reorder.release(math.inf)
        self.engine = self.engine.successor()
        fixes: list[AnyMeasurement] = [m for m in held if isinstance(m, GpsFix)]
        self.engine.counters.captured_after_now += sum(map(saw_something, held)) - len(fixes)
        late = self.reorder.late
        self.reorder = ReorderBuffer(self.params.reorder_window_s, self.engine.capture_time)
        self.reorder.late = late
        self._last_tracks = -math.inf
        return fixes

    def _captured_by(self, now: float, batch: Sequence[AnyMeasurement]) -> list[AnyMeasurement]:
        """`batch` judged by its stamps against `now`. A node-stamped measurement stamped more than
        `STEP_S` after `now`, or a Remote ID report more than that beyond the clock skew its
        driver allows (`REMOTE_ID_SKEW_S`), was stamped before the clock stepped back or by a
        sensor clock ahead of the node's: fused, it would put tracks in the future and make every
        later measurement late; it is dropped and counted (`captured_after_now`). A calibrated
        `time_offset_s` may explain a stamp ahead (a sensor whose stamps run early) or move a
        good one ahead (a positive offset): either way it is not from the future. A GPS fix that
        far ahead carries the true time of a node clock that is behind: it is kept, stamped `now`
        (fusion uses only its position; held in the reorder window until the clock caught up, it
        would hold the node's position back and make every radar plot late). So is a Remote ID
        report more than `STEP_S` but within its skew ahead: its drone's clock runs ahead, its
        position is as of its arrival, and fused at its stamp it would carry every track seconds
        into the future, where the radar's plots that follow find them all late (helper-100: a
        broadcaster 10 s ahead, 5 km away, left a radar track 8.3 m off for 6 s instead of 2.2)."""
        kept: list[AnyMeasurement] = []
        dropped, capture_time = 0, self.engine.capture_time
        for m in self.frame_stamps.restamp(batch):  # first, each frame at one time (`frame_stamps`)
            ahead = min(m.t_capture, capture_time(m)) - now  # either: the stamp, or with its offset
            judged = not isinstance(m, GpsFix)  # (a fix's time is the satellites': never judged)
            fine = (
                not judged
                or ahead <= STEP_S
                or (isinstance(m, RemoteIdReport) and ahead <= REMOTE_ID_SKEW_S + STEP_S)
            )
            if fine:  # beyond a step ahead (a fix, a report): as of its arrival
                kept.append(m if ahead <= STEP_S else dataclasses.replace(m, t_capture=now))
            else:
                seen = saw_something(m)
                dropped += seen
                self.engine.counters.ahead_by_sensor[m.sensor_id] += seen
            if judged and self._last_stamp.get(m.sensor_id) != m.t_capture:
                self._last_stamp[m.sensor_id] = m.t_capture
                if fine or not self._from_before_the_step(m.t_capture, now):
                    self._ahead.add(m.sensor_id, now, ahead, not fine)
        self.engine.counters.captured_after_now += dropped
        return kept

    def _from_before_the_step(self, stamp: float, now: float) -> bool:
        """Whether a stamp ahead of `now` is one of the old clock's, arriving within a window of
        a step back: dropped as any other, but no sign of a sensor clock ahead of the node's
        (else the health message sent at the step names every sensor with a frame in flight)."""
        old, new = self._stepped_from
        return now < new + WINDOW_S and stamp <= old + STEP_S

    def _cycle(self, now: float, started: float, final: bool) -> StepResult:
        self.now = now
        self.engine.fuse(self.reorder.due(now), now)
        # Tracks are judged (coasting, deletion, leaving the coverage) at the time up to which
        # measurements have been fused, not at `now`: the reorder window holds the last
        # `reorder_window_s` back, and a track whose next detection sits in it is not unfed. At the
        # end of input everything is fused, and `now` is that time.
        self.engine.maintain(now if final else now - self.params.reorder_window_s)
        self.cycle_ms = (time.perf_counter() - started) * 1000.0
        position, origin = self.engine.node_position(), self.engine.origin()
        moved = moved_materially(position, self._position) or origin != self._origin
        if moved:
            self._position, self._origin = position, origin
        quiet = StepResult(now, position=self._position, origin=self._origin, position_changed=moved)
        if not (self._retired or self.engine.has_changes()):
            return quiet
        # At most `tracks_max_rate_hz`, give or take RATE_SLACK_S: cycle times on the epoch (1.8e9 s)
        # carry rounding of ~1e-7 s, so four 50 ms cycles can fall a hair short of 0.2 s, and an
        # exact test then waits for a fifth (4 Hz for 5, 12 Hz for 20, depending on the epoch).
        if not final and now - self._last_tracks < 1.0 / self.params.tracks_max_rate_hz - RATE_SLACK_S:
            return quiet
        self._last_tracks = now
        reports, self._retired = self._retired + self.engine.drain(), []
        alerts, self._pending_alerts = self._pending_alerts, []
        monitor = self._monitor()
        if monitor is not None:
            alerts += monitor.evaluate(now, reports)
        return dataclasses.replace(quiet, tracks=tuple(reports), alerts=tuple(alerts))

    def retire(self, now: float) -> StepResult:
        """The node stops cleanly: every published track is deleted (and its alerts cleared) in one
        last report, so a consumer's picture empties instead of freezing (after a crash the Last
        Will and the next session's new ids tell it the same: docs/mqtt.md)."""
        reports, self._retired = self._retired + self.engine.retire_all(), []
        alerts, self._pending_alerts = self._pending_alerts, []
        monitor = self._monitor()
        if monitor is not None:
            alerts += monitor.evaluate(now, reports)
        tracks = tuple(reports) if reports or alerts else None
        return StepResult(now, tracks, tuple(alerts), self._position, self._origin)

    def _monitor(self) -> AlertMonitor | None:
        """The zone monitor, made once the local frame exists (zones are drawn in it)."""
        frame = self.engine.frame
        if self.alerts is None and frame is not None and self._zones:
            self.alerts = AlertMonitor(
                build_zones(self._zones, frame),
                self.params.alert_update_s,
                self.params.rid_only_alerts_per_min,
                self.params.alert_clear_s,
            )
        return self.alerts

    # -- what the runtime asks between steps --------------------------------------------------
    def idle(self) -> bool:
        """Whether a cycle without measurements would change nothing: no track of any status,
        nothing held in the reorder window (or in a scanning radar's open batch of plots) or
        waiting to be published, no active zone alert.
        (`track` jumps over a gap between its lines while the core is idle.)"""
        return not (
            len(self.reorder)
            or self.engine.sweeping.open is not None
            or self._retired
            or self._pending_alerts
            or self.active_alerts()
            or self.engine.tracker.table.active().size
            or self.engine.has_changes()
        )

    def position(self) -> NodePosition | None:
        """The node's position as last reported (see `moved_materially`)."""
        return self._position

    def origin(self) -> GeoPoint | None:
        """The origin of the ENU frame of every track's `enu_m` (pinned once known)."""
        return self._origin

    def tracks_now(self) -> list[TrackReport]:
        """The published tracks as they stand, without consuming changes (evaluation scoring)."""
        return self.engine.current()

    def replace_zones(self, zones: Sequence[ZoneSpec]) -> None:
        """The `zone-update` command. Alerts in zones that remain keep their id; alerts in removed
        zones are cleared with the next `tracks` message."""
        self._zones = tuple(zones)
        frame = self.engine.frame
        if self.alerts is not None and frame is not None:
            self._pending_alerts.extend(self.alerts.replace(zones, frame, self.now))

    def active_alerts(self) -> list[AlertKey]:
        return self.alerts.active_keys() if self.alerts is not None else []

    def acknowledge(self, key: AlertKey, ack: AlertAck) -> bool:
        """The `alert-ack` command: the ack rides on the alert's later events; False if it is not
        active."""
        return self.alerts is not None and self.alerts.acknowledge(key, ack)

    @property
    def critical_alert_active(self) -> bool:
        return self.alerts is not None and self.alerts.critical_active

    @property
    def counters(self) -> FusionCounters:
        return self.engine.counters

    def status(self) -> FusionStatus:
        status = self.engine.tracker.table.status
        return FusionStatus(
            confirmed=int(np.count_nonzero(status == Status.CONFIRMED)),
            coasting=int(np.count_nonzero(status == Status.COASTING)),
            tentative=int(np.count_nonzero(status == Status.TENTATIVE)),
            births_refused=self.engine.tracker.initiations_refused,
            births_pruned=self.engine.tracker.births_pruned,
            cycle_ms=self.cycle_ms,
            late=self.reorder.late,
            held=len(self.reorder) + self.engine.sweeping.held(),
            remote_id=self.engine.remote_id.status(self.now)
            | {"alerts_suppressed": self.alerts.suppressed if self.alerts is not None else 0},
            dropped=self.engine.dropped(),
            without_range_rate=self.engine.counters.without_range_rate,
            outside_coverage=self.engine.counters.outside_coverage,
            fixtures_learnt=self.engine.tracker.fixtures.learnt(),
            clutter_spots=self.engine.tracker.local_clutter.spots(self.now, self.engine.tracker.stats),
            range_rate_contradicted=self.engine.tracker.alias.contradicted_total(),
            stale_sensors=self.stale_sensors(),
            ahead_sensors=self.ahead_sensors(),
        )

    def stale_sensors(self) -> dict[str, float]:
        """`FusionStatus.stale_sensors`, alone: cheap enough for the status LED's every update."""
        return self.engine.stale_scans.mostly_stale()

    def ahead_sensors(self) -> dict[str, float]:
        """`FusionStatus.ahead_sensors`, alone (as `stale_sensors`)."""
        return self._ahead.mostly_dropped(self.now)
