"""Remote ID reports into fusion, in bulk and within bounds.

A Remote ID broadcast is a claim ("I am X, here, a multirotor"), and claims are cheap: a laptop
with a native-USB receiver can announce a thousand drones a second. So the reports of one core
step are taken together, and nothing they do may crowd out the physical sensors:
- one report per broadcaster per step (the newest; the same message arrives on several carriers
  and repeats), fused as one scan per kind (with or without velocity) at the newest report's
  time, each position carried forward by its own broadcast velocity;
- tracks that only Remote ID supports (no physical sensor ever saw them) take at most
  `rid_only_max_tracks` slots of the tracker, so a radar's births always find room; beyond
  that, a new broadcaster is remembered (its identity binds as soon as a physical track takes
  its reports) but starts no track, and is counted as `rid_shed`;
- a broadcaster's claimed type is class evidence only while its track is physically supported
  and its reports agree with it (`consistent`): Remote ID alone never makes a drone label;
- many broadcasters first heard within a minute (`rid_spoofing_new_per_min`) are reported in
  health as a suspected spoofing attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.fusion import claims, classify
from cuas_node.fusion.identity import IdentityBinder
from cuas_node.fusion.measurement_models import PositionVelocityModel
from cuas_node.fusion.params import FusionParams
from cuas_node.fusion.snapshots import Snapshots
from cuas_node.fusion.tracker import Scan, Tracker
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import RemoteIdReport

FloatArray = npt.NDArray[np.float64]
_NO_VELOCITY_DRIFT_MPS = 10.0
"""How far a report without velocity may have moved per second of carrying it forward (its
position sigma grows by this): a typical small drone's cruise speed."""


@dataclass
class RemoteIdCounters:
    reports: int = 0
    merged: int = 0  # repeats of a broadcaster within one step (several carriers, retransmits)
    shed: int = 0  # reports that could start no track: Remote ID-only tracks at their limit
    unsupported: int = 0  # no position, or from a receiver fusion does not know


class RemoteIdInput:
    def __init__(
        self, params: FusionParams, tracker: Tracker, binder: IdentityBinder, receivers: set[str]
    ) -> None:
        self.params = params
        self.tracker = tracker
        self.binder = binder
        self.receivers = receivers
        self.counters = RemoteIdCounters()

    def fuse(
        self,
        reports: list[RemoteIdReport],
        frame: LocalFrame,
        capture_time: Callable[[RemoteIdReport], float],
    ) -> list[Snapshots]:
        """Fuse one step's reports; returns the confirmed phantom tracks withdrawn (see identity)."""
        newest: dict[str, tuple[float, RemoteIdReport]] = {}
        for report in reports:
            self.counters.reports += 1
            where = (report.lat, report.lon, report.alt_geo_m)
            if report.sensor_id not in self.receivers or not all(finite(v) for v in where):
                self.counters.unsupported += 1
                continue
            t = capture_time(report)
            seen = newest.get(report.uas_id)
            if seen is not None:
                self.counters.merged += 1
                if seen[0] >= t:
                    continue
            newest[report.uas_id] = (t, report)
        if not newest:
            return []
        t_scan = max(t for t, _ in newest.values())
        deleted: list[Snapshots] = []
        room = self._room()
        for with_velocity in (True, False):
            batch = [(t, r) for t, r in newest.values() if (r.vel_enu_mps is not None) == with_velocity]
            if batch:
                deleted += self._fuse_kind(batch, with_velocity, t_scan, frame, room)
                room = self._room()
        return deleted

    def _room(self) -> int:
        """Slots Remote ID may still start tracks in."""
        tb = self.tracker.table
        rid_only = np.count_nonzero((tb.status != Status.FREE) & ~np.isfinite(tb.t_physical))
        return max(self.params.rid_only_max_tracks - int(rid_only), 0)

    def _fuse_kind(
        self,
        batch: list[tuple[float, RemoteIdReport]],
        with_velocity: bool,
        t_scan: float,
        frame: LocalFrame,
        room: int,
    ) -> list[Snapshots]:
        reports = [r for _, r in batch]
        ages = np.array([t_scan - t for t, _ in batch])
        lat = np.array([r.lat for r in reports], dtype=np.float64)
        lon = np.array([r.lon for r in reports], dtype=np.float64)
        alt = np.array([r.alt_geo_m for r in reports], dtype=np.float64)
        enu = np.atleast_2d(frame.to_enu(lat, lon, alt))
        # F3411 accuracies are 95 % bounds; unknown ones get the loosest categories' values.
        sig_h = np.array([(r.h_accuracy_m or 30.0) / 2.0 for r in reports])
        sig_v = np.array([(r.v_accuracy_m or 45.0) / 2.0 for r in reports])
        if with_velocity:
            vel = np.array([r.vel_enu_mps for r in reports], dtype=np.float64)
            enu = enu + vel * ages[:, None]  # carried forward to the scan's time by its own velocity
            sig_s = np.array([(r.speed_accuracy_mps or 3.0) / 2.0 + 0.5 for r in reports])
            z = np.hstack([enu, vel])
            sig = np.column_stack([sig_h, sig_h, sig_v, sig_s, sig_s, sig_s])
        else:
            drift = _NO_VELOCITY_DRIFT_MPS * ages
            z = enu
            sig = np.column_stack([np.hypot(sig_h, drift), np.hypot(sig_h, drift), np.hypot(sig_v, drift)])
        allowed = np.array([self.binder.initiate_allowed(r.uas_id) for r in reports], dtype=bool)
        # Known broadcasters first, then new ones, up to the room left for Remote ID-only tracks.
        order = np.argsort([r.uas_id not in self.binder.records for r in reports], kind="stable")
        may_start = np.zeros(len(reports), dtype=bool)
        candidates = order[allowed[order]]
        may_start[candidates[:room]] = True
        self.counters.shed += int(candidates.size - min(room, candidates.size))
        variances = sig**2
        r_matrix = np.zeros((len(reports), z.shape[1], z.shape[1]))
        idx = np.arange(z.shape[1])
        r_matrix[:, idx, idx] = variances
        model = PositionVelocityModel(reports[0].sensor_id, with_velocity=with_velocity)
        scan = Scan(model, t_scan, z, r_matrix, full_scan=False, physical=False, initiate=may_start)
        result = self.tracker.process(scan)
        deleted: list[Snapshots] = []
        table = self.tracker.table

        def claimed(slot: int) -> bool:
            return bool(self.tracker.manager.claimed(np.array([slot], dtype=np.intp), t_scan)[0])

        for i, report in enumerate(reports):
            v = z[i, 3:] if with_velocity else None
            slot = int(result.slot_of[i])
            for phantom in self.binder.on_report(table, report, z[i, :3], v, slot, t_scan, claimed):
                deleted.append(self.tracker.drop(np.array([phantom], dtype=np.intp)))
            record = self.binder.records[report.uas_id]
            if slot >= 0 and table.status[slot] != Status.FREE and table.number[slot] == record.strict_number:
                earned = claims.earned(record.supported, record.landed_count, self.binder.confirm_reports)
                claims.renew(table, self.tracker.stats, slot, t_scan - ages[i], earned)
            if record.loose_number is not None or record.strict_number is None or not record.supported:
                continue  # a claim nothing physical supports, or one that disagrees, is no evidence
            slots = np.flatnonzero((table.number == record.strict_number) & (table.status != Status.FREE))
            classify.remote_id_update(table, slots, report.ua_type)
        return deleted

    def status(self, t: float) -> dict[str, object]:
        """`health.fusion.remote_id`: broadcasters heard, how many no physical sensor supports,
        and whether so many appeared at once that spoofing is suspected."""
        records = self.binder.records.values()
        new = self.binder.new_broadcasters(t)
        return {
            "broadcasters": len(self.binder.records),
            "unsupported": sum(1 for r in records if not r.supported),
            "new_last_min": new,
            "spoofing_suspected": new > self.params.rid_spoofing_new_per_min,
            "reports": self.counters.reports,
            "merged": self.counters.merged,
            "shed": self.counters.shed,
        }


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
