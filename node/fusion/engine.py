"""The fusion core's front door: calibration, time order, dispatch to the tracker, output records.

The runtime hands it batches of measurements in the sensors' own frames; it applies each sensor's
calibration (mount pose, time offset), keeps the node's local ENU frame (from config, or the first
GPS fix), runs the tracker in capture-time order and produces the track records to publish.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibration.pose import Pose
from node.config import Config, TiMmwaveSensor
from node.fusion.tracker import RadarGeometry, RadarScan, Tracker, TrackSnapshot
from node.geo import LocalFrame
from node.measurement import AnyMeasurement, GpsFix, RadarDetection

# GPS fixes are averaged until this many arrive; a static node then keeps a stable origin.
_GPS_AVERAGE = 10


@dataclass
class FusionCounters:
    measurements: int = 0
    scans: int = 0
    waiting_for_position: int = 0
    unsupported: int = 0
    cycle_ms: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)


class FusionEngine:
    def __init__(self, config: Config, session: int) -> None:
        self.config = config
        self.session = session
        self.params = config.fusion
        sensors = [s for s in config.sensors if s.enabled]
        self.time_offsets = {s.id: s.time_offset_s for s in sensors}
        self.radars = {
            s.id: RadarGeometry(
                sensor_id=s.id,
                pose=Pose.from_angles(s.mount.yaw_deg, s.mount.pitch_deg, s.mount.roll_deg, s.mount.offset_m),
                max_range_m=s.max_range_m,
                fov_az_rad=math.radians(s.fov_az_deg),
                fov_el_rad=math.radians(s.fov_el_deg),
            )
            for s in sensors
            if isinstance(s, TiMmwaveSensor)
        }
        self.tracker = Tracker(self.params, [s.id for s in sensors])
        pos = config.node.position
        self.frame: LocalFrame | None = LocalFrame(pos.lat, pos.lon, pos.alt_m) if pos else None
        self.position_source = "config" if pos else None
        self._gps: list[tuple[float, float, float]] = []
        self.gps_position: tuple[float, float, float] | None = None
        self.counters = FusionCounters()
        self._deleted: list[TrackSnapshot] = []
        self.last_t = 0.0

    # -- input ------------------------------------------------------------------------------
    def process(self, batch: Iterable[AnyMeasurement]) -> None:
        """Fuse a batch in capture-time order; radar detections sharing a frame form one scan."""
        ordered = sorted(batch, key=lambda m: m.t_capture + self.time_offsets.get(m.sensor_id, 0.0))
        scan: list[RadarDetection] = []
        for m in ordered:
            self.counters.measurements += 1
            kind = type(m).__name__
            self.counters.by_kind[kind] = self.counters.by_kind.get(kind, 0) + 1
            if isinstance(m, RadarDetection):
                if scan and (scan[0].sensor_id != m.sensor_id or scan[0].t_capture != m.t_capture):
                    self._radar_scan(scan)
                    scan = []
                scan.append(m)
            elif isinstance(m, GpsFix):
                self._gps_fix(m)
            else:
                self.counters.unsupported += 1
        if scan:
            self._radar_scan(scan)

    def _radar_scan(self, detections: list[RadarDetection]) -> None:
        first = detections[0]
        geometry = self.radars.get(first.sensor_id)
        if geometry is None:
            self.counters.unsupported += len(detections)
            return
        if self.frame is None:
            self.counters.waiting_for_position += len(detections)
            return
        t = first.t_capture + self.time_offsets.get(first.sensor_id, 0.0)
        z = np.array([(d.range_m, d.az_rad, d.el_rad, d.radial_mps) for d in detections])
        sigmas = np.array(
            [(d.sigma_range_m, d.sigma_az_rad, d.sigma_el_rad, d.sigma_radial_mps) for d in detections]
        )
        self.tracker.process_radar(RadarScan(first.sensor_id, t, z, sigmas), geometry)
        self.counters.scans += 1
        self.last_t = max(self.last_t, t)

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
            self.position_source = "gps"

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
        """Housekeeping at time t (coasting, deletion), even when no measurement arrives."""
        self._deleted.extend(self.tracker.maintain(t))

    def has_changes(self) -> bool:
        table = self.tracker.table
        return bool(self._deleted) or bool(
            table.changed[self.tracker.publishable(self.params.publish_tentative)].any()
        )

    def drain_tracks(self) -> list[dict[str, Any]]:
        """Track records for one `tracks` message: every live published track plus new deletions."""
        slots = self.tracker.publishable(self.params.publish_tentative)
        snapshots = self.tracker.snapshot(slots) + self._deleted
        self.tracker.table.changed[:] = False
        self._deleted = []
        return self.to_records(snapshots)

    def to_records(self, snapshots: list[TrackSnapshot]) -> list[dict[str, Any]]:
        if not snapshots or self.frame is None:
            return []
        enu = np.array([s.enu for s in snapshots])
        lat, lon, alt = self.frame.to_geodetic(enu)
        records = []
        for i, s in enumerate(snapshots):
            records.append(
                {
                    "id": f"{self.session}.{s.number}",
                    "status": s.status,
                    "t": round(s.t, 3),
                    "lat": round(float(lat[i]), 7),
                    "lon": round(float(lon[i]), 7),
                    "alt_m": round(float(alt[i]), 2),
                    "enu_m": [round(float(v), 2) for v in s.enu],
                    "vel_enu_mps": [round(float(v), 2) for v in s.vel],
                    "pos_cov_enu_m2": [[round(float(v), 3) for v in row] for row in s.cov],
                    "class": {"label": "unknown", "confidence": 1.0},
                    "sensors": s.sensors,
                }
            )
        return records
