"""The fusion core's front door: calibration, the local frame, dispatch to the tracker, reports.

It is handed measurements in the sensors' own frames, already in capture-time order (the core step,
`cuas_node.core.step`, owns the reorder window); it applies each sensor's calibration (mount pose,
time offset, range bias), keeps the node's local ENU frame (from the configured origin, or the
first GPS fixes), runs the tracker, classification and Remote ID identity, and reports tracks as
typed `TrackReport`s. It knows nothing of configuration files or wire formats.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from cuas_node.fusion import classify
from cuas_node.fusion.ground import Ground
from cuas_node.fusion.identity import IdentityBinder
from cuas_node.fusion.late import StaleScans
from cuas_node.fusion.measurement_models import (
    BearingModel,
    MeasurementModel,
    PhysicalCoverage,
    PositionVelocityModel,
    RadarModel,
    bearing_model,
    noise_from_sigmas,
    radar_model,
)
from cuas_node.fusion.node_gps import NodeGps
from cuas_node.fusion.params import (
    BearingSensor,
    FusionSetup,
    PositionReceiver,
    PresenceSensor,
    RadarSensor,
    RemoteIdReceiver,
)
from cuas_node.fusion.radar_frames import RecentFrames, below_ground, outside_coverage, radar_arrays
from cuas_node.fusion.remote_id_input import RemoteIdInput
from cuas_node.fusion.reporting import track_reports
from cuas_node.fusion.snapshots import Snapshots
from cuas_node.fusion.sweep import SWEEP_GUARD, PlotBatch, SweepingRadars, batch_window_s
from cuas_node.fusion.tracker import Scan, Tracker
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import (
    AcousticBearing,
    AnyMeasurement,
    EmptyRadarScan,
    GpsFix,
    RadarDetection,
    RemoteIdReport,
    RfPresence,
    saw_something,
)
from cuas_node.kernel.reports import GeoPoint, NodePosition, TrackReport


@dataclass
class FusionCounters:
    measurements: int = 0  # things seen: an EmptyRadarScan is a scan (and in by_kind), not one of these
    scans: int = 0
    waiting_for_position: int = 0
    unsupported: int = 0
    below_ground: int = 0
    invalid: int = 0  # radar detections with a non-finite or impossible range, angle or sigma: dropped
    outside_coverage: int = 0  # radar detections beyond the configured coverage by > OUTSIDE_SIGMAS σ (fused)
    without_range_rate: int = 0  # radar detections fused by the 3-D model (no usable range-rate)
    captured_after_now: int = 0  # stamped after `now`, or held at a clock step (`NodeCore._captured_by`)
    ahead_by_sensor: Counter[str] = field(default_factory=Counter)  # of those, stamped after `now`, by sensor
    duplicate: int = 0  # radar detections repeating one of the same radar and capture time (`RecentFrames`)
    stale: int = 0  # radar and acoustic scans too long before the newest to fuse (`late.StaleScans`)
    stale_by_sensor: Counter[str] = field(default_factory=Counter)  # `stale`, by sensor
    by_kind: dict[str, int] = field(default_factory=dict)


_STAMP = operator.attrgetter("t_capture")
_SCAN_KEY = operator.attrgetter("sensor_id", "__class__", "t_capture")  # one scan: see `fuse`


class FusionEngine:
    def __init__(self, setup: FusionSetup) -> None:
        self.setup = setup
        self.params = setup.params
        self.time_offsets = {s.sensor_id: s.time_offset_s for s in setup.sensors}
        # When the capture time on the node's clock: the stamp plus the sensor's calibrated time
        # offset. Most nodes calibrate none, and then it is the stamp itself, read in C: a radar
        # frame is a hundred detections, each asked in the reorder window.
        self.capture_time: Callable[[AnyMeasurement], float] = (
            self._offset_capture_time if any(self.time_offsets.values()) else _STAMP
        )
        self.range_bias = {s.sensor_id: s.range_bias_m for s in setup.sensors if isinstance(s, RadarSensor)}
        self.models: dict[str, MeasurementModel] = {}
        # Per radar: the model for detections without a usable range-rate (3-D); for a radar that
        # measures none it is also its model in `models`.
        self.position_only: dict[str, RadarModel] = {}
        self.presence: dict[str, PresenceSensor] = {}
        for s in setup.sensors:
            if isinstance(s, RadarSensor):
                self.position_only[s.sensor_id] = radar_model(s, range_rate=False)
                self.models[s.sensor_id] = radar_model(s) if s.range_rate else self.position_only[s.sensor_id]
            elif isinstance(s, BearingSensor):
                self.models[s.sensor_id] = bearing_model(s)
            elif isinstance(s, RemoteIdReceiver):
                self.models[s.sensor_id] = PositionVelocityModel(s.sensor_id)
            elif isinstance(s, PresenceSensor):
                self.presence[s.sensor_id] = s
        self.stale_scans = StaleScans(
            {
                s.sensor_id: s.delivery_s if isinstance(s, BearingSensor) else 1.0 / s.scan_rate_hz
                for s in setup.sensors
                if isinstance(s, RadarSensor | BearingSensor)
            }
        )
        sensor_ids = [s.sensor_id for s in setup.sensors]
        self.tracker = Tracker(self.params, sensor_ids, history_reach_s=self.stale_scans.reach_s)
        scanning = [s for s in setup.sensors if isinstance(s, RadarSensor) and s.sweeps]
        self.sweeping = SweepingRadars({s.sensor_id: batch_window_s(s) for s in scanning})
        for s in setup.sensors:
            if isinstance(s, RadarSensor) and s.sensor_id in self.tracker.sensor_bits:
                bit, late = self.tracker.sensor_bits[s.sensor_id], SWEEP_GUARD if s.sweeps else 0.0
                self.tracker.stats.seed(bit, s.false_alarms_per_scan, s.scan_rate_hz, late)
        self.frame: LocalFrame | None = None
        if setup.origin is not None:
            self._pin(LocalFrame(setup.origin.lat, setup.origin.lon, setup.origin.alt_m))
        self.gps = NodeGps({s.sensor_id: s for s in setup.sensors if isinstance(s, PositionReceiver)})
        self.binder = IdentityBinder(loose_gate_m=self.params.rid_loose_gate_m)
        receivers = {s.sensor_id for s in setup.sensors if isinstance(s, RemoteIdReceiver)}
        self.remote_id = RemoteIdInput(self.params, self.tracker, self.binder, receivers)
        self.counters = FusionCounters()
        self.recent_frames = RecentFrames()
        self._deleted: list[Snapshots] = []
        self.last_t = 0.0

    def dropped(self) -> dict[str, int]:
        """Measurements since start that fusion could not use, by reason (`health.fusion.dropped`)."""
        return {
            "invalid": self.counters.invalid,
            "below_ground": self.counters.below_ground,
            "unsupported": self.counters.unsupported + self.remote_id.counters.unsupported,
            "waiting_for_position": self.counters.waiting_for_position,
            "captured_after_now": self.counters.captured_after_now,
            "duplicate": self.counters.duplicate,
            "stale": self.counters.stale,
        }

    def successor(self) -> FusionEngine:
        """A fresh engine for a wall clock that stepped back (`NodeCore`): every time this one holds
        (track states and histories, sensor statistics, the clutter map, Remote ID bindings) lies
        in the new clock's future, so none of it is kept. What is not time carries over: the local
        frame and the node's GPS position, the track numbering (ids are never reused within a
        session), the counters health reports since start, and the fixtures learnt (places, not
        times: their epochs restart on the new clock)."""
        new = FusionEngine(self.setup)
        new.tracker.fixtures = self.tracker.fixtures.restarted()
        held = self.sweeping.close()  # a scanning radar's plots of the old clock, as the window's
        self.counters.captured_after_now += 0 if held is None else len(held.plots)
        if self.frame is not None and new.frame is None:
            new._pin(self.frame)
        new.gps = self.gps
        new.tracker.table.continue_numbering(self.tracker.table)
        new.stale_scans = self.stale_scans.restarted()
        new.counters, new.remote_id.counters = self.counters, self.remote_id.counters
        new.tracker.births = self.tracker.births
        return new

    # -- input ------------------------------------------------------------------------------
    def _offset_capture_time(self, m: AnyMeasurement) -> float:
        return m.t_capture + self.time_offsets.get(m.sensor_id, 0.0)

    def fuse(self, ordered: Sequence[AnyMeasurement], now: float = math.inf) -> None:
        """Fuse measurements in capture-time order; those sharing a sensor, kind and instant form
        one scan. Remote ID reports are fused together after the rest (`remote_id_input`). `now`:
        the core step's clock, beyond which no scan sets the newest time stale ones are judged by."""
        remote_id: list[RemoteIdReport] = []
        plotted: set[tuple[str, float]] | None = None  # radar frames with plots, once an empty one is met
        # One scan: a sensor's measurements of one kind and capture instant (its time offset is
        # the sensor's own, so equal stamps are equal capture times).
        for _, group in itertools.groupby(ordered, key=_SCAN_KEY):
            items = list(group)
            first = items[0]
            seen = len(items) if saw_something(first) else 0  # one class per group
            self.counters.measurements += seen
            kind = type(first).__name__
            self.counters.by_kind[kind] = self.counters.by_kind.get(kind, 0) + len(items)
            t = self.capture_time(first)
            if isinstance(
                first, RadarDetection | EmptyRadarScan | AcousticBearing
            ) and self.stale_scans.stale(first.sensor_id, t, now):
                self.counters.stale += seen
                self.counters.stale_by_sensor[first.sensor_id] += seen
                continue
            if isinstance(first, EmptyRadarScan) and self.sweeping.heartbeat(first.sensor_id, t):
                continue  # a scanning radar's empty line within its open batch: the batch's check is its
            swept = isinstance(first, RadarDetection) and first.sensor_id in self.sweeping.sensor_ids
            if not (swept or isinstance(first, GpsFix | RfPresence)):  # (those move no track)
                self._sweep_batch(self.sweeping.close())  # nothing that does is fused out of order
            if isinstance(first, GpsFix):
                for fix in items:
                    assert isinstance(fix, GpsFix)
                    self._gps_fix(fix)
                continue
            if self.frame is None:
                self.counters.waiting_for_position += seen
                continue
            if swept:
                self._sweep_batch(self.sweeping.hold(first.sensor_id, t, list(items)))
                self.last_t = max(self.last_t, t)
                continue
            if isinstance(first, RadarDetection):
                self._radar(cast("list[RadarDetection]", items), t)  # one class per group
            elif isinstance(first, EmptyRadarScan):
                if plotted is None:
                    plotted = {(m.sensor_id, m.t_capture) for m in ordered if isinstance(m, RadarDetection)}
                framed = (first.sensor_id, first.t_capture) in plotted
                if first.sensor_id in self.sweeping.sensor_ids:  # a scanning radar's heartbeat
                    if not framed:  # (with plots of its time, their check after them is its)
                        self._sweep_arrived(first.sensor_id, t)
                        self._sweep_check(first.sensor_id, t)
                elif not framed and self.tracker.last_scan_t(first.sensor_id) != t:  # one frame, one look
                    self._look(first.sensor_id, t)
            elif isinstance(first, AcousticBearing):
                self._acoustic([m for m in items if isinstance(m, AcousticBearing)], t)
            elif isinstance(first, RemoteIdReport):
                remote_id += [m for m in items if isinstance(m, RemoteIdReport)]
            elif isinstance(first, RfPresence):
                for presence in items:
                    assert isinstance(presence, RfPresence)
                    self._fpv(presence)
            self.last_t = max(self.last_t, t)
        if remote_id and self.frame is not None:
            self._hold_deleted(self.remote_id.fuse(remote_id, self.frame, self.capture_time))

    def _sweep_batch(self, batch: PlotBatch | None) -> None:
        """A scanning radar's batch of plots: associated together as one partial scan at the
        midpoint of their stamps (fusion/sweep.py: `batch_window_s`)."""
        if batch is not None:
            plots = cast("list[RadarDetection]", batch.plots)
            self._radar(plots, batch.t_mid)

    def _radar(self, detections: list[RadarDetection], t: float) -> None:
        """One radar frame (or a scanning radar's batch of plots, one report at `t`). Detections
        with a usable range-rate are fused by the 4-D model, the others (a 3-D radar, a plot
        extractor, NaN or None radial) by the 3-D one; a frame holding both is fused as two scans
        at the same instant: the smaller first, counting only its hits, then the larger as the
        full look at the coverage, whose misses count except for the tracks the first one hit
        (`TrackManager.record`), so one frame is one look. Nothing non-finite reaches the
        tracker: such detections are dropped."""
        sensor_id = detections[0].sensor_id
        model = self.models.get(sensor_id)
        position_only = self.position_only.get(sensor_id)
        if not isinstance(model, RadarModel) or position_only is None:
            self.counters.unsupported += len(detections)
            return
        z, sig, extent, valid, rate = radar_arrays(detections, self.range_bias.get(sensor_id, 0.0))
        stamps = np.fromiter(map(_STAMP, detections), float, len(detections)) if model.sweeps else None
        repeated = np.zeros(valid.size, dtype=bool)  # a frame (a plot) delivered twice is fused once
        rows = np.hstack([z, sig])[valid]
        repeated[valid] = self.recent_frames.repeated(
            sensor_id, t, rows, None if stamps is None else stamps[valid]
        )
        self.counters.duplicate += int(np.count_nonzero(repeated))
        self.counters.invalid += int(np.count_nonzero(~valid))
        if repeated.any() and not (valid & ~repeated).any():
            return  # fused already, and its look counted
        valid &= ~repeated
        if model.sweeps:
            self._sweep_arrived(sensor_id, t)
        if not model.range_rate:
            rate[:] = False  # the radar is declared without range-rate: its radial values are not trusted
        self.counters.outside_coverage += int(
            np.count_nonzero(valid & outside_coverage(model.coverage, z, sig))
        )
        keep = valid
        dropped = below_ground(self.tracker.ground, z[valid], sig[valid], rate[valid], model.pose)
        if dropped.any():
            self.counters.below_ground += int(np.count_nonzero(dropped))
            keep = valid.copy()
            keep[valid] = ~dropped
        parts = [(keep & rate, model), (keep & ~rate, position_only)]
        parts = sorted((p for p in parts if p[0].any()), key=lambda p: int(np.count_nonzero(p[0])))
        for i, (rows, part_model) in enumerate(parts):
            if part_model.dim == 3:
                self.counters.without_range_rate += int(np.count_nonzero(rows))
            d = part_model.dim
            scan = Scan(
                part_model,
                t,
                z[rows, :d],
                noise_from_sigmas(sig[rows, :d]),
                full_scan=i == len(parts) - 1 and not model.sweeps,
                stamps=None if stamps is None else stamps[rows],
            )
            result = self.tracker.process(scan)
            self.counters.scans += 1
            hit = result.slot_of >= 0
            size = extent[rows][hit]
            size = np.where(np.isfinite(size), size, 0.0)  # no extent reported: none seen
            classify.radar_update(self.tracker.table, result.slot_of[hit], size, t, self.params.confirm_m)
        if model.sweeps:  # after its plots: one that takes a track is its look, no miss
            self._sweep_check(sensor_id, t)
        elif not parts:  # every detection dropped: the radar still looked (its misses count)
            self._look(sensor_id, t)

    def _sweep_arrived(self, sensor_id: str, t: float) -> None:
        """A scanning radar reported at `t`: a silence before it too long for its false alarms
        was the radar off, and charges no misses (fusion/sweep.py)."""
        tracker = self.tracker
        bit = tracker.sensor_bits.get(sensor_id, 63)
        period, per_sweep = float(tracker.stats.period_s[bit]), float(tracker.stats.all_false_alarms[bit])
        self.sweeping.arrived(
            tracker.table, sensor_id, t, period, per_sweep, tracker.manager.thresholds.alpha
        )

    def _sweep_check(self, sensor_id: str, t: float) -> None:
        """The tracks a scanning radar's beam has passed by `t` since their last look without a
        plot taking them are charged a miss (fusion/sweep.py)."""
        period = float(self.tracker.stats.period_s[self.tracker.sensor_bits.get(sensor_id, 63)])
        if self.sweeping.due(self.tracker.table, t, period):
            self._look(sensor_id, t)

    def _look(self, sensor_id: str, t: float) -> None:
        """A radar frame with nothing in it (`EmptyRadarScan`, or every detection dropped): a full
        look at the coverage, so every track it should have seen is charged a miss."""
        model = self.models.get(sensor_id)
        if not isinstance(model, RadarModel):
            return  # not a radar fusion knows: nothing was measured, so nothing is counted as dropped
        self.tracker.process(Scan(model, t, np.zeros((0, model.dim)), np.zeros((0, model.dim, model.dim))))
        self.counters.scans += 1

    def _acoustic(self, bearings: list[AcousticBearing], t: float) -> None:
        model = self.models.get(bearings[0].sensor_id)
        if not isinstance(model, BearingModel):
            self.counters.unsupported += len(bearings)
            return
        z = np.array([(b.az_rad, b.el_rad) for b in bearings])
        sig = np.array([(b.sigma_az_rad, b.sigma_el_rad) for b in bearings])
        result = self.tracker.process(Scan(model, t, z, noise_from_sigmas(sig), full_scan=False))
        self.counters.scans += 1
        hit = result.slot_of >= 0
        likelihood = np.array([b.drone_likelihood for b in bearings])[hit]
        classify.acoustic_update(self.tracker.table, result.slot_of[hit], likelihood)

    def _fpv(self, presence: RfPresence) -> None:
        """Analog video nearby is evidence for the tracks it could come from; it moves none."""
        sensor = self.presence.get(presence.sensor_id)
        table = self.tracker.table
        firm = np.flatnonzero((table.status == Status.CONFIRMED) | (table.status == Status.COASTING))
        if sensor is None or not firm.size:
            return
        rel = sensor.pose.enu_to_sensor(table.x[firm, :3])
        near = np.linalg.norm(rel, axis=1) < sensor.max_range_m
        if presence.bearing_rad is not None:
            az = np.arctan2(rel[:, 0], rel[:, 1])
            off = np.angle(np.exp(1j * (az - presence.bearing_rad)))
            near &= np.abs(off) < 3.0 * (presence.sigma_bearing_rad or math.radians(30.0))
        classify.fpv_update(table, firm[near])
        table.changed[firm[near]] = True

    def _gps_fix(self, fix: GpsFix) -> None:
        self.gps.add(fix)
        if self.frame is None and self.gps.position is not None:
            # The origin is pinned once: moving it would shift every live track.
            self._pin(LocalFrame(*self.gps.position))

    def _pin(self, frame: LocalFrame) -> None:
        """Pin the local frame (once) and place the ground in it."""
        self.frame = frame
        ground_alt = self.setup.ground_alt_m
        self.tracker.ground = Ground(0.0 if ground_alt is None else ground_alt - frame.alt_m)

    def node_position(self) -> NodePosition | None:
        """The node's best position for `info`: GPS when it has a fix, else the configured one."""
        gps = self.gps.reported()
        if gps is not None:
            return gps
        if self.frame is not None:
            return NodePosition(self.frame.lat, self.frame.lon, self.frame.alt_m, source="config")
        return None

    def origin(self) -> GeoPoint | None:
        """Where the local ENU frame (every `enu_m`) is pinned; None until it is known."""
        frame = self.frame
        return None if frame is None else GeoPoint(frame.lat, frame.lon, frame.alt_m)

    # -- housekeeping and output ------------------------------------------------------------
    def maintain(self, t: float) -> None:
        """Housekeeping at time t, up to which everything has been fused (a scanning radar's
        batch of plots whose window ends by then is complete; one still open is not, and its first
        plot's time is then the time judged): coast and delete tracks, forget Remote IDs fallen
        silent."""
        self._sweep_batch(self.sweeping.close(t))
        if self.sweeping.open is not None:  # its plots (not fused yet) may feed tracks unfed since
            t = min(t, self.sweeping.open.t_first)
        self._hold_deleted([self.tracker.maintain(t)])
        self.binder.forget_stale(t)

    def _hold_deleted(self, parts: Iterable[Snapshots]) -> None:
        """Deletions until the next `drain`; not empty ones, which a quiet node made every cycle."""
        self._deleted += [part for part in parts if len(part)]

    def settle(self) -> None:
        """End of input: fuse the scanning radar's plots still held in an open batch."""
        self._sweep_batch(self.sweeping.close())

    def has_changes(self) -> bool:
        published = self.tracker.publishable(self.params.publish_tentative)
        return bool(self._deleted) or bool(self.tracker.table.changed[published].any())

    def drain(self) -> list[TrackReport]:
        """Reports for one `tracks` message: every live published track plus the deletions since
        the last drain; the change flags start afresh."""
        slots = self.tracker.publishable(self.params.publish_tentative)
        snapshots = self.tracker.snapshot(slots)
        deleted, self._deleted = Snapshots.concat(self._deleted), []
        self.tracker.table.changed[:] = False
        if deleted is None:
            return self._reports(snapshots, slots)
        # One batch (one geodetic conversion, one classification): deleted rows have no slot.
        gone = np.full(len(deleted), -1, dtype=np.intp)
        return self._reports(Snapshots.concat([snapshots, deleted]), np.concatenate([slots, gone]))

    def retire_all(self) -> list[TrackReport]:
        """The node stops: every published track is reported `deleted` (with the deletions not yet
        reported) and forgotten, so consumers are not left with tracks nobody will update."""
        slots = self.tracker.publishable(self.params.publish_tentative)
        snapshots = self.tracker.snapshot(slots, deleted=True)
        self.tracker.table.release(slots)
        deleted, self._deleted = self._deleted, []
        return self._reports(Snapshots.concat([*deleted, snapshots]), None)

    def current(self) -> list[TrackReport]:
        """The published tracks as they stand now, without consuming any change (evaluation)."""
        slots = self.tracker.publishable(self.params.publish_tentative)
        return self._reports(self.tracker.snapshot(slots), slots)

    def _reports(self, snapshots: Snapshots | None, slots: np.ndarray | None) -> list[TrackReport]:
        if snapshots is None or not len(snapshots) or self.frame is None:
            return []
        radars = [(m.pose, m.coverage) for m in self.models.values() if isinstance(m, RadarModel)]
        return track_reports(
            snapshots, slots, self.frame, self.tracker.table, self.binder, PhysicalCoverage(radars)
        )
