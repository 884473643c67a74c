"""The multi-sensor tracker: IMM-EKF per track, gated global nearest neighbour, track score.

Components are kept separate in the Stone Soup manner (predict, gate, assign, update here; the
initiator in `initiation`, the deleter in `management`, what each sensor is observed to do in
`sensor_stats`), but each acts on every track at once through the structure-of-arrays
`TrackTable`, and one generic scan path serves every sensor through its measurement model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import chdtri

from cuas_node.fusion import imm, jpda, late
from cuas_node.fusion.alias_evidence import AliasEvidence
from cuas_node.fusion.association import assign
from cuas_node.fusion.clutter_profile import SiteClutterProfile
from cuas_node.fusion.fixtures import SiteFixtures, unexplained_by_site
from cuas_node.fusion.gating import Gating, gate_scan, take_alias
from cuas_node.fusion.ground import Ground, hold_above_ground
from cuas_node.fusion.initiation import BirthCounters, hit_score, make_room
from cuas_node.fusion.local_clutter import SiteLocalClutter
from cuas_node.fusion.looks import says_present
from cuas_node.fusion.management import TrackManager
from cuas_node.fusion.measurement_models import MeasurementModel, noise_from_sigmas, radar_model, splitting
from cuas_node.fusion.params import FusionParams, RadarSensor
from cuas_node.fusion.sensor_stats import SensorStats
from cuas_node.fusion.snapshots import Snapshots, take_snapshots
from cuas_node.fusion.tracks import Status, TrackTable
from cuas_node.fusion.twins import one_birth_per_object, same_return, scans_to_tell, split_plots, track_twins

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class RadarScan:
    """All detections of one radar frame, stacked: z (M,4) = range, az, el, radial; sigmas (M,4)."""

    sensor_id: str
    t: float
    z: FloatArray
    sigmas: FloatArray


@dataclass
class Scan:
    """Measurements of one sensor taken at one instant, for any measurement model."""

    model: MeasurementModel
    t: float
    z: FloatArray  # (M, D)
    r: FloatArray  # (M, D, D)
    full_scan: bool = True  # a look at all of the coverage (radar frame), not one report
    initiate: bool | BoolArray = True  # per measurement when an array
    physical: bool = True  # a non-cooperative sensor: evidence the object is really there
    stamps: FloatArray | None = None  # (M,) a scanning radar's batch of plots: their capture times


@dataclass
class ScanResult:
    """Which track slot took each measurement (−1: none) and which slots were started."""

    slot_of: IndexArray
    started: IndexArray
    extra: dict[str, Any] = field(default_factory=dict)


class Tracker:
    def __init__(
        self,
        params: FusionParams,
        sensor_ids: list[str],
        imm_params: imm.ImmParams | None = None,
        history_reach_s: float = late.LATE_REACH_S,
    ) -> None:
        self.params = params
        self.imm = imm_params or imm.default_params(params)
        self.table = TrackTable(params.max_tracks, self.imm.n_models, self.imm.initial_mode)
        # past estimates, for late measurements: as far back as a measurement may be and be fused
        self.history = late.History(self.table.capacity, history_reach_s)
        self.sensor_bits = {sid: i for i, sid in enumerate(sensor_ids[:63])}
        self.stats = SensorStats(params.clutter_per_scan, params.detection_probability)
        self.manager = TrackManager(params, self.table, self.stats, self._underground)
        self.fixtures = SiteFixtures(params.learn_fixtures_after_s)  # recurring plots: site (`fixtures`)
        self.local_clutter = SiteLocalClutter(params.local_clutter)  # where plots come several at a time
        self.profile = SiteClutterProfile(params.clutter_profile)  # where false alarms fall in range
        self.alias = AliasEvidence()  # what all of a track's plots say of its range-rate (`alias_evidence`)
        self.births = BirthCounters()
        self._gates: dict[int, float] = {}
        self.ground: Ground | None = None  # set by the engine once the local frame is known

    @property
    def initiations_refused(self) -> int:
        """Births with no slot at all: every slot held an established track."""
        return self.births.refused

    @property
    def births_pruned(self) -> int:
        """Tentative hypotheses dropped as the least likely to make room (`initiation`)."""
        return self.births.pruned

    def gate(self, dim: int) -> float:
        if dim not in self._gates:
            self._gates[dim] = float(chdtri(dim, 1.0 - self.params.gate_probability))
        return self._gates[dim]

    # -- components -------------------------------------------------------------------------
    def _predict_to(self, active: IndexArray, t: float) -> FloatArray:
        """Predict forward to t where the track is older; return each track's dt ≤ 0 to the scan
        (negative where the measurement is out of sequence)."""
        tb = self.table
        dt = t - tb.t_state[active]
        ahead = dt > 0
        imm.mix_and_predict(tb, active[ahead], dt[ahead], self.imm)
        tb.t_state[active[ahead]] = t
        return np.minimum(dt, 0.0)

    # -- one scan of any sensor --------------------------------------------------------------
    def process(self, scan: Scan) -> ScanResult:
        tb = self.table
        bit = self.sensor_bits.get(scan.model.sensor_id, 63)
        self.stats.scan(bit, scan.model, scan.t, scan.z, scan.r)
        self.manager.clutter.fit(bit, scan.model, self.stats)
        clutter = self.stats.clutter_density(bit, scan.model, scan.z.shape[1], self.params.clutter_per_scan)
        active = tb.active()
        m = scan.z.shape[0]
        lam = self.fixtures.clutter_at(bit, scan.model, scan.t, scan.z, clutter, self.stats, self.profile)
        local_counts = unexplained_by_site(lam, clutter, m)  # the known places are priced already
        local = self.local_clutter.density(bit, scan.model, scan.t, scan.z, clutter, self.stats)
        profile = self.profile.density(bit, scan.model, scan.t, scan.z, self.stats)
        if profile is not None and bool((profile > clutter).any()):  # where false alarms concentrate
            lam = (clutter if lam is None else lam) + np.maximum(profile - clutter, 0.0)
        if local is not None:
            lam = (clutter if lam is None else lam) + local
        slot_of = np.full(m, -1, dtype=np.intp)
        near_track: BoolArray = np.zeros(m, dtype=bool)
        also_starts: BoolArray = np.zeros(m, dtype=bool)  # plots young tracks took (see below)
        near_firm: BoolArray = np.zeros(m, dtype=bool)
        taken: BoolArray = np.zeros(m, dtype=bool)  # plots established tracks took (and their splits)
        updated: BoolArray = np.zeros(active.size, dtype=bool)
        gain = np.zeros(active.size)
        contested: BoolArray = np.zeros(active.size, dtype=bool)
        twins = np.zeros(0, dtype=np.intp)  # younger tracks of targets two tracks follow (`twins`)
        shared: BoolArray = np.zeros(active.size, dtype=bool)  # rows given a soft update (`jpda`)
        seen = None  # the tracks' predicted measurements, when gating computed them
        if active.size:
            dt = self._predict_to(active, scan.t)
            if m:
                gamma = self.gate(scan.z.shape[1])
                g = gate_scan(tb, active, scan.t, dt, scan.model, scan.z, scan.r, gamma, self.imm)
                gated, seen = g.gated, g.z_pred
                is_firm = tb.status[active] != Status.TENTATIVE
                firm = np.flatnonzero(is_firm)
                near_firm = np.asarray(gated[firm].any(axis=0))
                contested = np.asarray(gated.any(axis=1))
                # Two passes: established tracks choose first, tentative ones share the rest.
                chosen = assign(g.ki, g.mj, g.cost, is_firm[g.ki])
                taken[g.mj[chosen]] = True
                if scan.stamps is not None:  # a split return's other plot is no young track's
                    taken |= split_plots(
                        scan.model, scan.z, scan.r, scan.stamps, taken, self.gate(scan.z.shape[1])
                    )
                chosen = np.concatenate([chosen, assign(g.ki, g.mj, g.cost, ~is_firm[g.ki] & ~taken[g.mj])])
                rows, cols = g.ki[chosen], g.mj[chosen]
                if chosen.size:
                    slot_of[cols] = active[rows]
                    if g.alias is not None:  # a young track's second plot says its speed's alias
                        take_alias(tb, active[rows], g.alias[chosen], scan.t)
                    updated[rows] = True
                    gain[rows] = hit_score(
                        g.loglik[chosen], self.stats.pd(bit), clutter if lam is None else lam[cols]
                    )
                    # A track born last scan judged its second plot on its velocity prior alone (at
                    # 1 Hz a gate as wide as the coverage). A plot that counted against it is as
                    # likely another object's: it also starts a track (both hypotheses kept, the
                    # scores choose), else a false alarm's track stops a drone's birth scan by scan.
                    second = ~is_firm[rows] & (tb.updates[active[rows]] == 1)
                    also_starts[cols[second & (gain[rows] < 0.0)]] = True
                    if not scan.model.ranging:  # how well a bearing-only track knows its direction
                        tb.bearing_sigma_rad[active[rows]] = np.sqrt(scan.r[cols, 0, 0])
                    soft = (
                        jpda.shared_rows(is_firm, g.ki, g.mj, dt)
                        if scan.full_scan and scan.model.splits_objects
                        else np.zeros(0, np.intp)
                    )
                    hard = np.ones(active.size, dtype=bool)
                    hard[soft] = False
                    hard = hard[rows]
                    in_time = hard & (dt[rows] == 0.0)  # the others were taken before their track's time
                    now_rows, now_cols = rows[in_time], cols[in_time]
                    extra = None if g.rate_extra is None else g.rate_extra[now_rows]
                    now_pairs = chosen[in_time]
                    imm.update(
                        tb,
                        active[now_rows],
                        g.nu[now_pairs],
                        g.h[now_rows],
                        g.r[now_pairs],
                        extra,
                        imm.miss_density(
                            self.manager.holding(
                                active[now_rows], is_firm[now_rows], bit, scan.model, g.z_pred[now_rows]
                            ),
                            self.stats.pd(bit),
                            self.params.gate_probability,
                            clutter if lam is None else lam[now_cols],
                        ),
                        g.terms_of(now_pairs),
                    )
                    self.alias.observe(
                        tb, active[now_rows], scan.z[now_cols], scan.r[now_cols], scan.t, scan.model, bit
                    )
                    self._late_update(active[rows[hard & ~in_time]], scan, cols[hard & ~in_time])
                    self._soft_update(active, soft, g, scan, clutter if lam is None else lam)
                    updated[soft] = shared[soft] = True
                # plots tracks may own, and a split return's other plot
                near_track = self._claimed(g, active, rows, cols, scan) | (taken & (slot_of < 0))
                if scan.full_scan and firm.size > 1:
                    twins = track_twins(
                        tb,
                        active,
                        is_firm,
                        (g.ki, g.mj, g.h),
                        scan.r,
                        updated,
                        self.gate,
                        scans_to_tell(self.stats.pd(bit), self.params.false_track_probability),
                        shared,
                    )
            rejected = self._record_hits(active, updated, gain, contested, scan, bit, seen)
            if rejected.size:  # their plots start tracks of their own (`TrackManager.record`)
                freed = np.isin(slot_of, rejected)
                slot_of[freed], near_track[freed] = -1, False
                updated &= ~np.isin(active, rejected)
            tb.absent[twins] = True  # gone at the next `maintain`, its deletion published
            if self.ground is not None:
                hold_above_ground(tb, active, self.ground)
            self.history.remember(tb, active[updated])
        # The false alarms of the uniform density: a plot a known reflector explains is not one.
        ungated = float(np.count_nonzero(~near_firm))
        unexplained = ungated if lam is None else float((clutter / lam)[~near_firm].sum())
        self.local_clutter.observe(bit, scan.model, scan.t, scan.z, ~taken & local_counts, self.stats)
        # A young track's third plot or later is no sector's clutter: a hovering drone's plots,
        # one a scan in one place, priced its own sector before its track confirmed (the ring
        # dilutes them over every azimuth).
        held = slot_of >= 0
        held[held] = tb.updates[slot_of[held]] >= 3
        self.profile.observe(bit, scan.model, scan.t, scan.z, ~near_firm & local_counts, self.stats, ~held)
        if scan.model.sweeps and m:  # a scanning radar's false alarms are counted by the sweep
            self.stats.swept(bit, scan.t, unexplained, ungated, scan.z, scan.r)
        elif scan.full_scan and not scan.model.sweeps:
            self.stats.unexplained(bit, unexplained, ungated)
        started = np.zeros(0, dtype=np.intp)
        if scan.initiate is True or np.any(scan.initiate):
            unclaimed = ((slot_of < 0) | also_starts) & ~near_track
            if scan.initiate is not True:  # per measurement
                unclaimed &= np.asarray(scan.initiate, dtype=bool)
            used, started = self._initiate(scan, unclaimed, bit)
            free = slot_of[used] < 0  # a plot a young track took and that also started one stays its
            slot_of[used[free]] = started[free]
            if not scan.full_scan:  # born of the frame's first part: its full look is no miss
                self.manager.seen_in_frame(bit, scan.t, started)
        return ScanResult(slot_of, started)

    def _claimed(
        self, g: Gating, active: IndexArray, rows: IndexArray, cols: IndexArray, scan: Scan
    ) -> BoolArray:
        """Measurements that may belong to an existing track, so they start no new one: those in
        the gate of a track that took nothing this scan (not one born last scan: its gate is its
        velocity prior's, and it held back 39 % of `also_starts`' births at 1 Hz), and those in the
        gate of a track that took another not resolvable from it (a split detection).
        A detection clearly apart from what its track took is another target: a young track's wide
        gate must not keep a neighbour from ever getting a track of its own (it would then be
        drawn from one target to the other)."""
        took = np.full(g.gated.shape[0], -1, dtype=np.intp)
        took[rows] = cols
        young = (self.table.status[active] == Status.TENTATIVE) & (self.table.updates[active] <= 1)
        claimed = np.asarray(g.gated[(took < 0) & ~young].any(axis=0))
        if not splitting(scan.model):  # two detections of one frame are two objects
            return claimed
        owner = took[g.ki]
        other = (owner >= 0) & (g.mj != owner)
        ki, mj = g.ki[other], g.mj[other]
        if mj.size:
            gamma = self.gate(scan.z.shape[1])
            claimed[mj[same_return(scan.model, scan.z, scan.r, scan.stamps, gamma, mj, took[ki])]] = True
        return claimed

    def _late_update(self, slots: IndexArray, scan: Scan, cols: IndexArray) -> None:
        """Measurements taken before their tracks' current time (`late`)."""
        if not slots.size:
            return
        info, vector = late.information_now(
            self.history,
            self.table,
            slots,
            np.full(slots.size, scan.t),
            scan.z[cols],
            scan.r[cols],
            scan.model,
            *self.imm.carry_noise,
        )
        late.add_information(self.table, slots, info, vector)

    def _soft_update(
        self, active: IndexArray, rows: IndexArray, g: Gating, scan: Scan, clutter: float | FloatArray
    ) -> None:
        """The JPDA-style update of the tracks in `rows` that compete for detections (`jpda`);
        `clutter` the scan's density, one or per measurement."""
        if rows.size:
            bit = self.sensor_bits.get(scan.model.sensor_id, 63)
            jpda.soft_update(self.table, active, rows, g, self.stats.pd(bit), clutter)

    def process_radar(self, scan: RadarScan, sensor: RadarSensor) -> ScanResult:
        return self.process(Scan(radar_model(sensor), scan.t, scan.z, noise_from_sigmas(scan.sigmas)))

    def _record_hits(
        self,
        active: IndexArray,
        updated: BoolArray,
        gain: FloatArray,
        contested: BoolArray,
        scan: Scan,
        bit: int,
        seen: FloatArray | None,
    ) -> IndexArray:
        """What the scan says of each track's existence (`management.TrackManager.record`); then
        the update bookkeeping of the hit ones. Returns the tracks rejected with their plot."""
        tb = self.table
        hit = active[updated]
        # An established track is fed (its timeouts start again) only by a plot that says its
        # target is there; any radar plot gives it a range.
        present = says_present(gain[updated], self.stats.pd(bit), scan.model)
        tb.fed(hit[(tb.status[hit] == Status.TENTATIVE) | present], scan.t, scan.model.ranging, hit)
        tb.updates[hit] += 1
        tb.sensor_mask[hit] |= np.uint64(1 << bit)
        tb.changed[hit] = True
        return self.manager.record(
            active, updated, gain, contested, scan.model, scan.full_scan, bit, scan.t, seen, scan.physical
        )

    def _initiate(self, scan: Scan, mask: BoolArray, bit: int) -> tuple[IndexArray, IndexArray]:
        """Start tentative tracks (score 0); returns the measurement indices used and their new
        slots. Room is made by pruning the least likely tentative hypotheses (`initiation`)."""
        candidates = np.flatnonzero(mask)
        if not candidates.size:
            return candidates, candidates
        x, p = scan.model.initiate(scan.z[candidates], scan.r[candidates])
        stamps = None if scan.stamps is None else scan.stamps[candidates]
        z, r, gamma = scan.z[candidates], scan.r[candidates], self.gate(scan.z.shape[1])
        keep = one_birth_per_object(scan.model, x, p, z, r, stamps, gamma)
        placed = make_room(
            self.table,
            int(keep.sum()),
            self.params.max_tentative,
            self.births,
            self.stats.all_false_alarms[bit],
        )
        self.history.grow(self.table.capacity)  # the table may have grown to make room
        keep[np.flatnonzero(keep)[placed:]] = False
        slots = self.table.allocate(x[keep], p[keep], scan.t, bit, scan.model.ranging, scan.physical)
        self.history.start(self.table, slots)
        used = candidates[keep][: slots.size]
        self.alias.observe(self.table, slots, scan.z[used], scan.r[used], scan.t, scan.model, bit)
        if not scan.model.ranging:
            self.table.bearing_sigma_rad[slots] = np.sqrt(scan.r[used, 0, 0])
        if scan.model.ranging:
            born = self.table.x[slots, :3]
            self.table.extra_hits[slots] = np.where(self.manager.clutter.hot(born, scan.t), 2, 0)
            if self.params.max_outlive_s > 0.0:  # (opt-in; a birth's slot starts at 0)
                wait = self.manager.clutter.outlive_s(born, scan.t)
                self.table.outlive_s[slots] = np.minimum(wait, self.params.max_outlive_s)
        return used, slots

    # -- housekeeping -----------------------------------------------------------------------
    def maintain(self, t: float) -> Snapshots:
        """Coast, and delete tracks unseen too long, gone from view or whose covariance blew up
        (`management.TrackManager.maintain`).

        Returns the last state of every deleted track that had been confirmed, so that its deletion
        can be published once.
        """
        active = self.table.active()
        if not active.size:
            self.manager.maintain(active, t)
            return self.snapshot(active)
        drop_firm, drop_tentative = self.manager.maintain(active, t)
        deleted = self.snapshot(drop_firm, deleted=True)
        self.table.release(np.concatenate([drop_firm, drop_tentative]))
        return deleted

    def _underground(self, slots: IndexArray) -> BoolArray:
        """Tracks below the ground by more than their own vertical uncertainty (fusion/ground.py)."""
        if self.ground is None or not slots.size:
            return np.zeros(slots.size, dtype=bool)
        return self.ground.impossible(self.table.x[slots, :3], np.sqrt(self.table.p[slots, 2, 2]))

    def drop(self, slots: IndexArray) -> Snapshots:
        """Remove tracks now (e.g. a phantom made of spoofed reports); confirmed ones are reported."""
        tb = self.table
        firm = slots[tb.status[slots] != Status.TENTATIVE]
        deleted = self.snapshot(firm, deleted=True)
        tb.release(slots)
        return deleted

    def snapshot(self, slots: IndexArray, deleted: bool = False) -> Snapshots:
        return take_snapshots(self.table, slots, self.sensors_of, deleted)

    def publishable(self, include_tentative: bool) -> IndexArray:
        tb = self.table
        if include_tentative:
            return tb.active()
        return np.flatnonzero((tb.status == Status.CONFIRMED) | (tb.status == Status.COASTING))

    def sensors_of(self, mask: int) -> list[str]:
        return [sid for sid, b in self.sensor_bits.items() if mask & (1 << b)]

    def last_scan_t(self, sensor_id: str) -> float:
        """The capture time of the newest scan of `sensor_id` (−inf before its first)."""
        return float(self.stats.last_t[self.sensor_bits.get(sensor_id, 63)])
