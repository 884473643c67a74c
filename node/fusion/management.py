"""Track management (the deleter and the confirmation logic): what a scan says about each track's
existence, and housekeeping on the data's clock.

- A sensor *should have seen* a track when its scan looked at it (`looks.looked_at`: inside its
  coverage, and known to within a few of the sensor's own resolution cells at its range).
- Each such look shifts the M-of-N window and moves the track score (`initiation`); a tentative
  track whose score falls to the SPRT rejection threshold is dropped at once (and remembered by
  the clutter map); an established track is gone once its evidence of absence reaches −2 ln α,
  that of `misses_to_delete(Pd)` misses in plain view in a row, Pd that sensor's observed detection
  probability. That evidence is a CUSUM of the score (Page's test: misses add −ln(1 − Pd), a hit
  takes back ln(1 − Pd + Pd·g/λ), never below 0), so a plot that a lost track's grown gate takes
  buys it less than a scan, not a fresh run of misses; and a coasting track is confirmed again
  only by hits that outweigh its misses, or by as many hits in a row as a new track needs.
- Housekeeping (`maintain`): coasting and deletion by time without an update, each timeout at
  least a few scan periods of the soonest sensor that times the track (`viewing`: the radars that
  fed it and look at it, else its other feeders; learnt, not configured, so a 1 Hz radar's tracks
  do not coast between its frames), and deletion by time never before such a radar would have
  missed a present target that long with probability α² (the misses-in-view rule's own bar: at
  1 Hz and Pd 0.6 about 20 s, not the 3 s of `delete_after_s`); deletion by covariance growth; and
  deletion of an established track whose predicted position has left the coverage of every
  sensor that could update it, once unseen for as long as a present target inside would be missed
  with probability α/odds at the learnt Pd, the odds that it is inside taken from how many σ of
  its own range or angle it is beyond the edge: far out it goes at once, on the edge it waits
  (1 − Pd)^k ≤ α (plain view asks α²). Outside by its estimate is not outside in truth: a target
  flying along the edge of a field of view is detected there (a beam has no hard edge) while its
  estimate, a fraction of a σ away, sits just beyond it; one unlucky miss must not cost it its
  identity.
- A track a Remote ID claim holds is not deleted by a radar's misses (`claims` has the rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from cuas_node.fusion import claims, looks, sweep
from cuas_node.fusion.clutter import SiteClutter
from cuas_node.fusion.coverage_odds import inside_odds, predicted
from cuas_node.fusion.initiation import Thresholds, typical_hits
from cuas_node.fusion.measurement_models import MeasurementModel
from cuas_node.fusion.params import FusionParams
from cuas_node.fusion.sensor_stats import SensorStats, fed_by, is_radar
from cuas_node.fusion.tracks import Status, TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

# Timeouts are at least this many periods of a sensor that times the track (`viewing`): to coast,
# to drop a tentative track, to delete, and to ask whether it left every coverage (of tracks
# unfed at least this long). Columns of `SensorStats.timeout_s`, indexed by the names below.
_PERIODS = (2.0, 2.5, 3.0, 1.5)
_COAST, _TENTATIVE, _DELETE, _LEFT_COVERAGE = range(4)
_PLOT_LEAST_HITS = 2  # the fewest hits that show motion: the M-of-N guard of a plot extractor's track


class TrackManager:
    def __init__(
        self,
        params: FusionParams,
        table: TrackTable,
        stats: SensorStats,
        underground: Callable[[IndexArray], BoolArray],
    ) -> None:
        self.params = params
        self.table = table
        self.stats = stats
        self.underground = underground
        self.thresholds = Thresholds.from_probabilities(
            params.false_track_probability, params.miss_probability
        )
        self.window_mask = np.uint32((1 << params.confirm_n) - 1)
        self.clutter = SiteClutter()
        self.lag_s = np.zeros(stats.last_t.size)  # per sensor bit: how late its newest scan reached maintain
        self._lag_measured_for = stats.last_t.copy()
        self.rejected = 0  # tentative tracks dropped by the SPRT
        # Per sensor bit: the time and slots of the tracks that a partial scan hit or started, for
        # the full scan of the same frame (a frame with and without range-rate is two scans).
        self._frame_hits: dict[int, tuple[float, IndexArray]] = {}

    # -- derived thresholds -----------------------------------------------------------------
    def _hypotheses_bonus(self, bit: int, model: MeasurementModel) -> float:
        """What a radar's scan adds to the confirmation bar: ln of the false alarms a scan it is
        specified to make (`false_alarms_per_scan`, else `fusion.clutter_per_scan`; at least 1).
        Wald's α bounds each false hypothesis's chance of confirming, and a scan with 50 false
        alarms starts 50 of them: α per scan asks ln 50 more nats of each (Bonferroni over the
        scan's births), about one more good hit without range-rate (α per hypothesis let 1000
        false births a second confirm a false track every half minute: benchmark, lr-20x50). Not
        the learnt rate: it counts every plot no established track explains, so 20 targets
        acquired at once read as 20 false alarms a scan and would each wait a hit more."""
        return math.log(max(1.0, float(self.stats.specified_false_alarms[bit]))) if is_radar(model) else 0.0

    def confirm_bar(self, bit: int, model: MeasurementModel) -> float:
        """The score a tentative track needs to confirm on a scan of this sensor: Wald's
        ln((1 − β)/α) and the scan's `_hypotheses_bonus`."""
        return self.thresholds.confirm + self._hypotheses_bonus(bit, model)

    def looked_at(
        self, active: IndexArray, bit: int, model: MeasurementModel, seen: FloatArray | None
    ) -> BoolArray:
        """See `looks.looked_at`."""
        return looks.looked_at(self.table, self.stats, active, bit, model, seen)

    def holding(
        self, slots: IndexArray, firm: BoolArray, bit: int, model: MeasurementModel, seen: FloatArray
    ) -> BoolArray:
        """The tracks that hold their target for a radar scan's judgement of a plot
        (`imm.miss_density`): established, no evidence of absence, and known to within a few of
        the radar's own cells (`looked_at`): a bearing-only track's range is a guess, and a
        radar's plot of its drone, far from that guess, is no false alarm to be taken in part.
        `seen`: their predicted measurements, as gating computed them."""
        holding = firm & (self.table.absence[slots] == 0.0)
        if holding.any():
            holding &= self.looked_at(slots, bit, model, seen)
        return holding

    def least_hits(self, model: MeasurementModel) -> int:
        """The M of the M-of-N guard for a scan of this sensor. The track score is the test; the
        guard is for false detections it does not model, and those come with a sensor that splits
        objects: fragments of a point cloud's cluster, or a neighbour's, pair up into a track that
        moves like a target (`fusion.confirm_m` of them, 3 by default). A plot extractor reports
        each object it resolves once a scan (`splits_objects = false`): its false plots are the
        clutter the score counts (uniform at the learnt density, the clutter map's extra hits
        where it recurs), and two plots, the fewest that show motion, are enough for the guard.
        At Pd 0.7 that is the difference between a median of three and of four scans to
        confirm."""
        if model.splits_objects:
            return self.params.confirm_m
        return min(self.params.confirm_m, _PLOT_LEAST_HITS)

    # -- one scan ---------------------------------------------------------------------------
    def record(
        self,
        active: IndexArray,
        updated: BoolArray,
        gain: FloatArray,
        contested: BoolArray,
        model: MeasurementModel,
        full_scan: bool,
        bit: int,
        t: float,
        seen: FloatArray | None = None,
        physical: bool = True,
    ) -> IndexArray:
        """What one scan says of each track: M-of-N window, score, evidence of absence; confirm;
        reject; physical support (`physical`: a non-cooperative sensor's scan). Returns the young
        tracks rejected with the plot they took (a scanning radar's, by the misses it owed): that
        plot is free to start a track. Tracks a Remote ID claim holds: see `claims`.

        `contested`: tracks that gated a detection another track took. That is no evidence of
        absence (the target may be unresolved from a neighbour's): the M-of-N window counts the
        miss, the score and the evidence of absence do not. `seen`: see `looked_at`."""
        tb = self.table
        firm = tb.status[active] != Status.TENTATIVE
        excused = np.zeros(active.size, dtype=bool)
        doomed = np.zeros(active.size, dtype=bool)  # see the scanning radar's plot below
        claimed = self.claimed(active, t)
        visible = None  # (established tracks: the chance the radar's Doppler notch let it see them)
        if full_scan:
            # Tracks a partial scan of this frame hit (or started) were seen in it: no miss, and
            # one detection. (Most frames have one part: nothing to look up.)
            t_part, part_slots = self._frame_hits.pop(bit, (math.nan, active[:0]))
            if t_part == t and part_slots.size:
                excused = np.isin(active, part_slots)
            looked = self.looked_at(active, bit, model, seen)
            if model.sweeps:  # a scanning radar's check: the beam passed only the overdue
                looked = sweep.check(tb, active, looked, t, self._sweep_scan(bit))
            # A miss counts against the sensor's Pd once the track holds its target again (below):
            # until then it may be the miss of a target that is gone (landed, or hidden), and those
            # would drag the learnt Pd down and so keep every dead track longer.
            learn = looked & firm & ~claimed  # (a held track may be a drone this radar cannot see)
            visible = looks.doppler_visible(tb, active, model)
            if visible is not None:  # a tentative track's misses all count: a slow tree is no drone
                visible[~firm] = 1.0
            learn[learn] = looks.moved(
                tb, self.stats, active[learn], bit, model, None if seen is None else seen[learn]
            )
            self.stats.detected(bit, int(np.count_nonzero(learn & (updated | excused))))
            looked &= ~excused  # their look was taken with their hit
            tb.unproven_misses[active[learn & ~excused & ~updated], bit] += 1
        else:
            looked = np.zeros(active.size, dtype=bool)
            if model.sweeps:  # a plot of a scanning radar: a look, unless its sweep's look again
                in_sight = self.looked_at(active, bit, model, seen)  # as its misses are judged
                updated, owed = sweep.counted_hits(tb, active, updated, in_sight, t, self._sweep_scan(bit))
                # A young track the misses owed for its silent sweeps take to the reject bar was
                # rejected by them, as a check in time would have: the plot is not its.
                doomed = owed & ~firm & (tb.score[active] <= self.thresholds.reject)
                updated &= ~doomed
                learn = firm & updated & in_sight & ~claimed
                learn[learn] = looks.moved(
                    tb, self.stats, active[learn], bit, model, None if seen is None else seen[learn]
                )
                self.stats.detected(bit, int(np.count_nonzero(learn)))
            self.seen_in_frame(bit, t, active[updated])
        # A track hit by both parts of a frame had its look in the first: one frame, one shift of
        # its M-of-N window (two would be two hits in a row).
        in_view = (looked | updated) & ~(updated & excused)
        if not physical:  # a claim's report is no look: the window holds what radars saw of it
            in_view &= ~claimed
        viewed = active[in_view]
        tb.hits[viewed] = (
            (tb.hits[viewed] << np.uint32(1)) | updated[in_view].astype(np.uint32)
        ) & self.window_mask
        pd = self.stats.pd(bit)
        missed = in_view & ~updated
        absent = missed & ~contested
        # What a miss adds to each track's score: ln(1 − Pd), Pd that of the radar where its Doppler
        # notch may hide the track (`looks.doppler_visible`).
        miss = np.full(active.size, math.log(1.0 - pd)) if visible is None else np.log1p(-pd * visible)
        tb.score[active[updated]] += gain[updated]
        tb.score[active[absent]] += miss[absent]
        # Evidence of absence: what the misses cost the score since it last grew, a hit taking back
        # only what the scan says for the target, ln(1 − Pd + Pd·g/λ) (the plot is the target's,
        # or a false alarm while the target was missed): a false alarm in a lost track's widened
        # gate (a gain near 0) buys it less than a scan, and no plot counts worse than a miss.
        hit = active[updated]
        take_back = np.logaddexp(gain[updated], miss[updated])
        tb.absence[hit] = np.maximum(tb.absence[hit] - take_back, 0.0)
        tb.absence[active[absent]] -= miss[absent]
        # A track holds its target again once its hits outweigh its misses, or once its last looks
        # were hits as many as a new track needs (`least_hits`): a target found again after a
        # long fade gives a few nats a hit, short of what five misses at Pd 0.97 cost, but hit
        # scan after scan; a false alarm in a lost track's gate seldom comes twice in a row.
        least = self.least_hits(model)
        in_a_row = np.uint32((1 << least) - 1)
        # (of a radar, the last of them a plot that says the target is there: only such feed it)
        strong = looks.says_present(gain[updated], pd, model)
        back = (tb.absence[hit] == 0.0) | (((tb.hits[hit] & in_a_row) == in_a_row) & strong)
        if physical:  # physical support: not a plot in the gate of a held track the radar lost
            supported = hit[back | ~claimed[updated]]
            tb.t_physical[supported] = np.maximum(tb.t_physical[supported], t)
            tb.x_physical[supported] = tb.x[supported, :3]
            tb.absence[hit[back & claimed[updated]]] = 0.0  # found again: its misses were a claim's
        else:  # a claim's own report holds it
            back |= claimed[updated]
        # Only then were its misses a present target's (a false alarm taken by the track of a
        # target that is gone proves nothing).
        proven = hit[back]
        proven = proven[tb.unproven_misses[proven].any(axis=1)]
        if proven.size:
            self.stats.missed_earlier(tb.unproven_misses[proven].sum(axis=0))
            tb.unproven_misses[proven] = 0
        tb.absent[active[updated]] = False
        gone = absent & firm & ~claimed & (tb.absence[active] >= self.thresholds.absence_to_delete(pd))
        tb.absent[active[gone]] = True
        status = tb.status[hit]
        # A clutter cell's extra hits never ask more than a real target gives in a typical window
        # at this sensor's learnt Pd (else, at Pd 0.7, a target in dense clutter waits for 6 of 6).
        reachable = max(least, typical_hits(self.params.confirm_n, pd))
        confirm = hit[
            # A coasting track is confirmed again when it holds its target again (`back`), not by
            # any plot its grown gate takes (its score, high from its life, says nothing of now).
            ((status == Status.COASTING) & back)
            | (
                (status == Status.TENTATIVE)
                & (np.bitwise_count(tb.hits[hit]) >= np.minimum(least + tb.extra_hits[hit], reachable))
                & (tb.score[hit] >= self.confirm_bar(bit, model))
                & (t - tb.t_created[hit] >= tb.outlive_s[hit])
            )
        ]
        confirm = confirm[~self.underground(confirm)]  # a ground-bounce image never confirms
        tb.status[confirm] = Status.CONFIRMED
        reject = active[(absent & ~firm & (tb.score[active] <= self.thresholds.reject)) | doomed]
        if reject.size:
            self.rejected += reject.size
            ranged = reject[np.isfinite(tb.t_ranged[reject])]
            self.clutter.add(tb.x[ranged, :3], tb.sensor_mask[ranged], t)
            tb.release(reject)
        return active[doomed]

    def _sweep_scan(self, bit: int) -> sweep.SweepScan:
        stats = self.stats
        gap, pd = float(stats.report_gap_s[bit]), stats.pd(bit)
        return sweep.SweepScan(float(stats.period_s[bit]), gap, pd, self.window_mask, bit)

    def seen_in_frame(self, bit: int, t: float, slots: IndexArray) -> None:
        """Tracks a partial scan of a sensor's frame at `t` hit or started: its full scan (the
        frame's other part, fused next at the same `t`) charges them no miss."""
        same = self._frame_hits.get(bit)
        before = same[1] if same is not None and same[0] == t else slots[:0]
        self._frame_hits[bit] = (t, np.concatenate([before, slots]))

    # -- housekeeping -----------------------------------------------------------------------
    def maintain(self, active: IndexArray, t: float) -> tuple[IndexArray, IndexArray]:
        """Coast; return the established tracks to delete and the tentative ones to drop."""
        fresh = self.stats.last_t > self._lag_measured_for
        self.lag_s[fresh] = np.maximum(t - self.stats.last_t[fresh], 0.0)
        self._lag_measured_for = self.stats.last_t.copy()
        if not active.size:  # a quiet node, every cycle
            return active, active
        tb = self.table
        status = tb.status[active]
        ranged = np.isfinite(tb.t_ranged[active])
        limit = np.where(ranged, self.params.max_position_sigma_m, self.params.max_position_sigma_m * 2.0)
        underground = self.underground(active)
        unfed = self.unfed_s(active, t)
        viewing = self.viewing(active, t)
        p = self.params
        timeouts = self.stats.timeout_s(viewing, _PERIODS)
        tentative = status == Status.TENTATIVE
        drop_tentative = tentative & (
            (unfed > np.maximum(p.tentative_delete_after_s, timeouts[:, _TENTATIVE])) | underground
        )
        firm = ~tentative
        left = firm & ranged & (unfed > timeouts[:, _LEFT_COVERAGE])
        if left.any():  # asked only of the few unfed for a while
            out = active[left]
            odds = inside_odds(tb, self.stats.models, out, predicted(tb, out, t))
            outside = np.isfinite(odds)
            # Gone once a present target inside would have been missed this long with probability
            # α / odds: the further out, the sooner (at even odds, on the edge, α).
            wait = self.stats.unseen_for_s(
                tb.sensor_mask[out[outside]], self.thresholds.alpha / np.maximum(odds[outside], 1e-300)
            )
            gone = np.zeros(out.size, dtype=bool)
            gone[outside] = unfed[left][outside] > wait
            left[left] = gone
        timed_out = firm & (unfed > np.maximum(p.delete_after_s, timeouts[:, _DELETE]))
        if timed_out.any():  # asked only of the few unfed for that long
            # Never sooner than the misses-in-view rule could have judged it: a 1 Hz radar at Pd 0.6
            # misses a present target 3 scans running every few tens of seconds.
            # Radars only: the other sensors charge no misses, and their Pd is not learnt.
            out = active[timed_out]
            bar = np.full(out.size, self.thresholds.alpha**2)
            patience = self.stats.unseen_for_s(viewing[timed_out] & self.stats.radar_mask(), bar)
            timed_out[timed_out] = unfed[timed_out] > patience
        drop_firm = firm & (
            timed_out
            | ~looks.position_sigma_within(tb, active, limit)
            | underground
            | tb.absent[active]
            | left
        )
        coast = (
            (status == Status.CONFIRMED)
            & (unfed > np.maximum(p.coast_after_s, timeouts[:, _COAST]))
            & ~drop_firm
        )
        tb.status[active[coast]] = Status.COASTING
        tb.changed[active[coast]] = True
        # Never confirmed: most likely a false alarm there. So is an established track lost in view
        # before it ever `moved` (`looks.moved`: ten of its radar's cells from where it started),
        # and its life tells how long tracks born there must live to confirm (`outlive_s`):
        # a sea spike, a glint, a flickering reflector that persists a second or two and moves a
        # little, like a target. Counted, they make their place ask the tracks born there to live
        # longer (an outside test's sea, spikes of 0.8 s: 1171 false confirmed tracks in 9 min); a
        # drone flies further than that while tracked, and one that hovers and is lost there in
        # plain view is counted as a reflector is (its place, for the half-life of the map).
        # (Lost in plain view, `absent`: not a track that left, or whose radar fell silent; never
        # claimed by Remote ID, whose tracks' motion is not judged, `looks.moved`.)
        lost = tb.absent[active] & ~tb.moved[active] & ranged & ~np.isfinite(tb.t_claimed[active])
        # Only lives a new track could outlive (`fusion.max_outlive_s`): a reflector's track that
        # lived a minute, a drone that hovered for one and was lost, ask nothing of their place.
        lived = tb.t_update[active] - tb.t_created[active]
        short = drop_firm & lost & (lived <= p.max_outlive_s)
        young = drop_tentative & ranged
        died = np.concatenate([active[young], active[short]])
        lives = np.concatenate([np.full(np.count_nonzero(young), np.nan), lived[short]])
        self.clutter.add(tb.x[died, :3], tb.sensor_mask[died], t, lives)
        return active[drop_firm], active[drop_tentative]

    def claimed(self, active: IndexArray, t: float) -> BoolArray:
        """Tracks a Remote ID claim holds (`claims`)."""
        return claims.claimed(self.table, self.stats, self.lag_s, active, t, self.params.rid_loose_gate_m)

    def viewing(self, active: IndexArray, t: float) -> npt.NDArray[np.uint64]:
        """Of the sensors that fed each track, those whose looks bound how long it may go unfed:
        the radars that fed it and look at it (`looked_at`: inside their coverage, its position
        known well enough that a miss there counts). A radar that cannot is none of them (a
        track a 10 Hz radar fed once coasted between a 1 Hz radar's scans after it left the fast
        one's view, and was deleted at a missed scan). A sensor that reports at will (Remote ID,
        a direction finder) keeps a track fed while it reports, and times it only when no such
        radar can (a 1 Hz radar's track coasted between every two of its scans once the drone
        stopped broadcasting Remote ID at 5 Hz), or while its claim holds a track no radar has
        updated since (`claimed`); every feeder when it was fed by radars alone."""
        fed = self.table.sensor_mask[active]
        radars = [(bit, m) for bit, m in self.stats.models.items() if is_radar(m)]
        radar_bits = np.uint64(sum(1 << bit for bit, _ in radars))
        if not radars or (len(radars) == 1 and not (fed & ~radar_bits).any()):
            return fed  # one radar and nothing else: its period either way
        looking = np.zeros(active.size, dtype=np.uint64)
        tb = self.table
        held = claims.held(tb, self.stats, self.lag_s, active, t, self.params.rid_loose_gate_m)
        for bit, model in radars:
            looking[self.looked_at(active, bit, model, None) & ~held] |= np.uint64(1 << bit)
        radars_on, others = fed & looking, fed & ~radar_bits
        return np.where(radars_on != 0, radars_on, np.where(others != 0, others, fed))

    def unfed_s(self, active: IndexArray, t: float) -> FloatArray:
        """Time without an update on the clock of the data that could have updated it: `t` less
        how much later than the promptest sensor the slowest one that fed it delivers. A late
        sensor (an array's block a second after capture) keeps its tracks; a silent one ages them."""
        tb = self.table
        delivered = np.flatnonzero(np.isfinite(self.stats.last_t))  # the few sensors that reported
        if delivered.size < 2:  # no sensor later than another
            return np.asarray(t - tb.t_update[active], dtype=np.float64)
        lag_s = self.lag_s[delivered]
        extra = lag_s - lag_s.min()
        fed = fed_by(tb.sensor_mask[active], delivered)
        lag = np.max(np.where(fed, extra[None, :], 0.0), axis=1, initial=0.0)
        return np.asarray(t - lag - tb.t_update[active], dtype=np.float64)
