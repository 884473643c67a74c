"""The fusion core's front door: calibration, time order, dispatch to the tracker, output records.

The runtime hands it batches of measurements in the sensors' own frames; it applies each sensor's
calibration (mount pose, time offset), keeps the node's local ENU frame (from config, or the first
GPS fixes), holds measurements for a short reorder window so they are fused in capture-time order,
runs the tracker, classification, Remote ID identity and zones, and produces the records to publish.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cuas_node.config import (
    AcousticArraySensor,
    Config,
    FpvRx5808Sensor,
    RemoteIdSensor,
    TiMmwaveSensor,
    ZoneSection,
)
from cuas_node.fusion.identity import IdentityBinder
from cuas_node.fusion.measurement_models import (
    SPEED_OF_SOUND_MPS,
    BearingModel,
    Coverage,
    MeasurementModel,
    PositionVelocityModel,
    RadarModel,
)
from cuas_node.fusion.tracker import Scan, Tracker, TrackSnapshot
from cuas_node.fusion.tracks import Status
from cuas_node.fusion.zones import ZoneMonitor, build_zones
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import (
    AcousticBearing,
    AnyMeasurement,
    GpsFix,
    RadarDetection,
    RemoteIdReport,
    RfPresence,
)
from cuas_node.kernel.pose import Pose

from cuas_node.fusion import classify

_GPS_AVERAGE = 10  # fixes averaged for the node's position; a static node then keeps a stable origin
_ACOUSTIC_RANGE_M = 600.0
_FPV_RANGE_M = 1500.0


@dataclass
class FusionCounters:
    measurements: int = 0
    scans: int = 0
    waiting_for_position: int = 0
    unsupported: int = 0
    late: int = 0
    cycle_ms: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)


def _pose(sensor: Any) -> Pose:
    m = sensor.mount
    return Pose.from_angles(m.yaw_deg, m.pitch_deg, m.roll_deg, m.offset_m)


def _diag(sigmas: np.ndarray) -> np.ndarray:
    m, d = sigmas.shape
    out = np.zeros((m, d, d))
    idx = np.arange(d)
    out[:, idx, idx] = sigmas**2
    return out


class FusionEngine:
    def __init__(self, config: Config, session: int) -> None:
        self.config = config
        self.session = session
        self.params = config.fusion
        sensors = [s for s in config.sensors if s.enabled]
        self.time_offsets = {s.id: s.time_offset_s for s in sensors}
        self.range_bias = {s.id: s.range_bias_m for s in sensors if isinstance(s, TiMmwaveSensor)}
        self.models: dict[str, MeasurementModel] = {}
        self.fpv_poses: dict[str, Pose] = {}
        for s in sensors:
            if isinstance(s, TiMmwaveSensor):
                cover = Coverage(s.max_range_m, math.radians(s.fov_az_deg), math.radians(s.fov_el_deg))
                self.models[s.id] = RadarModel(s.id, _pose(s), cover)
            elif isinstance(s, AcousticArraySensor):
                self.models[s.id] = BearingModel(
                    s.id, _pose(s), Coverage(_ACOUSTIC_RANGE_M), propagation_mps=SPEED_OF_SOUND_MPS
                )
            elif isinstance(s, RemoteIdSensor):
                self.models[s.id] = PositionVelocityModel(s.id)
            elif isinstance(s, FpvRx5808Sensor):
                self.fpv_poses[s.id] = _pose(s)
        self.tracker = Tracker(self.params, [s.id for s in sensors])
        pos = config.node.position
        self.frame: LocalFrame | None = LocalFrame(pos.lat, pos.lon, pos.alt_m) if pos else None
        self._gps: list[tuple[float, float, float]] = []
        self.gps_position: tuple[float, float, float] | None = None
        self.binder = IdentityBinder(loose_gate_m=self.params.rid_loose_gate_m)
        self.zones: ZoneMonitor | None = None
        self.pending_alerts: list[dict[str, Any]] = []
        self.counters = FusionCounters()
        self._deleted: list[TrackSnapshot] = []
        self._pending: list[tuple[float, int, AnyMeasurement]] = []
        self._seq = itertools.count()
        self._released_until = -math.inf
        self.last_t = 0.0

    # -- input ------------------------------------------------------------------------------
    def _time(self, m: AnyMeasurement) -> float:
        return m.t_capture + self.time_offsets.get(m.sensor_id, 0.0)

    def process(self, batch: Iterable[AnyMeasurement]) -> None:
        """Queue a batch; fuse, in capture-time order, all that is older than the reorder window."""
        latest = -math.inf
        for m in batch:
            t = self._time(m)
            latest = max(latest, t)
            heapq.heappush(self._pending, (t, next(self._seq), m))
        if latest > -math.inf:
            self._release(latest - self.params.reorder_window_s)

    def flush(self) -> None:
        """Fuse everything still held (end of a replay or evaluation)."""
        self._release(math.inf)

    def _release(self, until: float) -> None:
        ready: list[AnyMeasurement] = []
        while self._pending and self._pending[0][0] <= until:
            t, _, m = heapq.heappop(self._pending)
            if t < self._released_until:
                self.counters.late += 1  # fused anyway, by retrodiction; counted for health
            ready.append(m)
        if until > self._released_until and until < math.inf:
            self._released_until = until
        if ready:
            self._fuse(ready)

    def _fuse(self, ordered: list[AnyMeasurement]) -> None:
        """Fuse measurements in time order; those sharing a sensor, kind and instant form one scan."""
        for _, group in itertools.groupby(ordered, key=lambda m: (m.sensor_id, type(m), self._time(m))):
            items = list(group)
            first = items[0]
            self.counters.measurements += len(items)
            kind = type(first).__name__
            self.counters.by_kind[kind] = self.counters.by_kind.get(kind, 0) + len(items)
            if isinstance(first, GpsFix):
                for fix in items:
                    assert isinstance(fix, GpsFix)
                    self._gps_fix(fix)
                continue
            if self.frame is None:
                self.counters.waiting_for_position += len(items)
                continue
            t = self._time(first)
            if isinstance(first, RadarDetection):
                self._radar([m for m in items if isinstance(m, RadarDetection)], t)
            elif isinstance(first, AcousticBearing):
                self._acoustic([m for m in items if isinstance(m, AcousticBearing)], t)
            elif isinstance(first, RemoteIdReport):
                for report in items:
                    assert isinstance(report, RemoteIdReport)
                    self._remote_id(report, self._time(report))
            elif isinstance(first, RfPresence):
                for presence in items:
                    assert isinstance(presence, RfPresence)
                    self._fpv(presence)
            self.last_t = max(self.last_t, t)

    def _radar(self, detections: list[RadarDetection], t: float) -> None:
        model = self.models.get(detections[0].sensor_id)
        if not isinstance(model, RadarModel):
            self.counters.unsupported += len(detections)
            return
        bias = self.range_bias.get(detections[0].sensor_id, 0.0)
        z = np.array([(d.range_m - bias, d.az_rad, d.el_rad, d.radial_mps) for d in detections])
        sig = np.array(
            [(d.sigma_range_m, d.sigma_az_rad, d.sigma_el_rad, d.sigma_radial_mps) for d in detections]
        )
        result = self.tracker.process(Scan(model, t, z, _diag(sig)))
        self.counters.scans += 1
        hit = result.slot_of >= 0
        extent = np.array([d.extent_m for d in detections])[hit]
        classify.radar_update(self.tracker.table, result.slot_of[hit], extent, t)

    def _acoustic(self, bearings: list[AcousticBearing], t: float) -> None:
        model = self.models.get(bearings[0].sensor_id)
        if not isinstance(model, BearingModel):
            self.counters.unsupported += len(bearings)
            return
        z = np.array([(b.az_rad, b.el_rad) for b in bearings])
        sig = np.array([(b.sigma_az_rad, b.sigma_el_rad) for b in bearings])
        result = self.tracker.process(Scan(model, t, z, _diag(sig), full_scan=False))
        self.counters.scans += 1
        hit = result.slot_of >= 0
        likelihood = np.array([b.drone_likelihood for b in bearings])[hit]
        classify.acoustic_update(self.tracker.table, result.slot_of[hit], likelihood)

    def _remote_id(self, report: RemoteIdReport, t: float) -> None:
        assert self.frame is not None
        alt = report.alt_geo_m
        if report.sensor_id not in self.models or report.lat is None or report.lon is None or alt is None:
            self.counters.unsupported += 1
            return
        enu = self.frame.to_enu(report.lat, report.lon, alt)
        sig_h = (report.h_accuracy_m or 30.0) / 2.0  # F3411 accuracies are 95 % bounds
        sig_v = (report.v_accuracy_m or 45.0) / 2.0
        vel = None if report.vel_enu_mps is None else np.asarray(report.vel_enu_mps, dtype=np.float64)
        if vel is not None:
            sig_s = (report.speed_accuracy_mps or 3.0) / 2.0 + 0.5
            z = np.concatenate([enu, vel])[None, :]
            sig = np.array([[sig_h, sig_h, sig_v, sig_s, sig_s, sig_s]])
        else:
            z, sig = enu[None, :], np.array([[sig_h, sig_h, sig_v]])
        model = PositionVelocityModel(report.sensor_id, with_velocity=vel is not None)
        scan = Scan(
            model,
            t,
            z,
            _diag(sig),
            full_scan=False,
            physical=False,
            initiate=self.binder.initiate_allowed(report.uas_id),
        )
        result = self.tracker.process(scan)
        self.counters.scans += 1
        slot = int(result.slot_of[0])
        for phantom in self.binder.on_report(self.tracker.table, report, enu, vel, slot, t):
            self._deleted.extend(self.tracker.drop(np.array([phantom], dtype=np.intp)))
        record = self.binder.records[report.uas_id]
        targets = [n for n in (record.strict_number, record.loose_number) if n is not None]
        table = self.tracker.table
        slots = np.flatnonzero(np.isin(table.number, targets) & (table.status != Status.FREE))
        classify.remote_id_update(table, slots, report.ua_type)

    def _fpv(self, presence: RfPresence) -> None:
        """Analog video nearby is evidence for the tracks it could come from; it moves none."""
        pose = self.fpv_poses.get(presence.sensor_id)
        table = self.tracker.table
        firm = np.flatnonzero((table.status == Status.CONFIRMED) | (table.status == Status.COASTING))
        if pose is None or not firm.size:
            return
        rel = pose.enu_to_sensor(table.x[firm, :3])
        near = np.linalg.norm(rel, axis=1) < _FPV_RANGE_M
        if presence.bearing_rad is not None:
            az = np.arctan2(rel[:, 0], rel[:, 1])
            off = np.angle(np.exp(1j * (az - presence.bearing_rad)))
            near &= np.abs(off) < 3.0 * (presence.sigma_bearing_rad or math.radians(30.0))
        classify.fpv_update(table, firm[near])
        table.changed[firm[near]] = True

    def _gps_fix(self, fix: GpsFix) -> None:
        alt = fix.alt_hae_m
        if fix.quality <= 0 or alt is None:
            return
        if len(self._gps) < _GPS_AVERAGE:
            self._gps.append((fix.lat, fix.lon, alt))
            lat, lon, alt_m = (float(v) for v in np.mean(np.array(self._gps), axis=0))
            self.gps_position = (lat, lon, alt_m)
        if self.frame is None and self.gps_position is not None:
            # The origin is pinned once: moving it would shift every live track.
            self.frame = LocalFrame(*self.gps_position)

    def node_position(self) -> dict[str, Any] | None:
        """The node's best position for `info`: GPS when it has a fix, else the configured one."""
        if self.gps_position is not None:
            lat, lon, alt = self.gps_position
            return {"lat": round(lat, 7), "lon": round(lon, 7), "alt_m": round(alt, 2), "source": "gps"}
        if self.frame is not None:
            return {
                "lat": self.frame.lat,
                "lon": self.frame.lon,
                "alt_m": self.frame.alt_m,
                "source": "config",
            }
        return None

    # -- output -----------------------------------------------------------------------------
    def tick(self, t: float) -> None:
        """Housekeeping at time t: release held measurements, coast and delete, forget old IDs."""
        self._release(t - self.params.reorder_window_s)
        self._deleted.extend(self.tracker.maintain(t))
        self.binder.forget_stale(t)

    def has_changes(self) -> bool:
        table = self.tracker.table
        return bool(self._deleted) or bool(
            table.changed[self.tracker.publishable(self.params.publish_tentative)].any()
        )

    def drain_tracks(self, t: float | None = None) -> list[dict[str, Any]]:
        """Track records for one `tracks` message: every live published track plus new deletions.
        Zone alerts caused by them are left in `pending_alerts`."""
        slots = self.tracker.publishable(self.params.publish_tentative)
        snapshots = self.tracker.snapshot(slots)
        deleted, self._deleted = self._deleted, []
        self.tracker.table.changed[:] = False
        records = self.to_records(snapshots, slots) + self.to_records(deleted, None)
        if self.frame is not None and self.config.zones:
            if self.zones is None:
                self.zones = ZoneMonitor(
                    build_zones(self.config.zones, self.frame), self.params.alert_update_s
                )
            self.pending_alerts.extend(self.zones.evaluate(t if t is not None else self.last_t, records))
        return records

    def replace_zones(self, zones: list[ZoneSection]) -> None:
        """Swap the protected zones at run time (the `zone-update` command). Alerts in zones that
        remain keep their alert_id; alerts in removed zones are cleared now (a `cleared` event)."""
        self.config = self.config.model_copy(update={"zones": list(zones)})
        if self.zones is None or self.frame is None:
            return
        keep = {z.id for z in zones}
        old = {z.id: z for z in self.zones.zones}
        for key in sorted(self.zones.active):
            if key[1] not in keep:
                state = self.zones.active.pop(key)
                event = ZoneMonitor._event("cleared", state, old[key[1]], None, self.last_t)
                self.pending_alerts.append(event)
        self.zones.zones = build_zones(list(zones), self.frame)

    def drain_alerts(self) -> list[dict[str, Any]]:
        alerts, self.pending_alerts = self.pending_alerts, []
        return alerts

    def _in_physical_coverage(self, enu: np.ndarray) -> bool:
        point = np.asarray(enu, dtype=np.float64).reshape(1, 3)
        return any(
            bool(m.coverage.contains(m.pose, point)[0])
            for m in self.models.values()
            if isinstance(m, RadarModel)
        )

    def _geodetic(self, enu: np.ndarray) -> tuple[float, float, float]:
        assert self.frame is not None
        lat, lon, alt = self.frame.to_geodetic(enu)
        return float(lat), float(lon), float(alt)

    def to_records(self, snapshots: list[TrackSnapshot], slots: np.ndarray | None) -> list[dict[str, Any]]:
        if not snapshots or self.frame is None:
            return []
        enu = np.array([s.enu for s in snapshots])
        lat, lon, alt = self.frame.to_geodetic(enu)
        records = []
        table = self.tracker.table
        for i, s in enumerate(snapshots):
            record: dict[str, Any] = {
                "id": f"{self.session}.{s.number}",
                "status": s.status,
                "t": round(s.t, 3),
                "lat": round(float(lat[i]), 7),
                "lon": round(float(lon[i]), 7),
                "alt_m": round(float(alt[i]), 2),
                "enu_m": [round(float(v), 2) for v in s.enu],
                "vel_enu_mps": [round(float(v), 2) for v in s.vel],
                "pos_cov_enu_m2": [[round(float(v), 3) for v in row] for row in s.cov],
                "class": classify.summary(
                    classify.posterior(s.class_logp, float(np.linalg.norm(s.vel)), s.hover_s, s.extent_m),
                    s.evidence_mask,
                ),
                "sensors": s.sensors,
            }
            if s.bearing_only:
                record["bearing_only"] = True
            if slots is not None:
                rid = self.binder.describe(
                    s.number, table, int(slots[i]), s.t, self._in_physical_coverage, self._geodetic
                )
                if rid is not None:
                    record["remote_id"] = rid
            records.append(record)
        return records
