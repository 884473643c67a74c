"""Measurements older than a track's state (out of sequence): fused as the information they add now.

A sensor that delivers late (an acoustic array's bearing a second after capture, a radar frame held
up on a busy host) hands fusion a measurement z taken at κ when the track already stands at k > κ,
updated by whatever came in between. Retrodicting the current estimate to κ and mapping the gain
back (K = P Fᵀ Hᵀ S⁻¹) treats the current uncertainty as if it were all there at κ: for a target
that manoeuvred since, one old detection then swings today's velocity by metres per second,
where fusing it in time order would have moved it by a fraction of that.

Instead each track keeps a short history of its past estimates (`History`). From the newest
estimate at τ ≤ κ, the prior at κ is predicted; z is filtered there, and the prior with and
without z are both predicted to k; the difference of their informations is what z tells about the
state now (the equivalent-measurement approach of Bar-Shalom, Chen and Mallick, 2004):

    I_z = P⁻¹(k | τ, z) − P⁻¹(k | τ),   i_z = P⁻¹(k | τ, z) x(k | τ, z) − P⁻¹(k | τ) x(k | τ)

and it is added to the current estimate of every IMM model: P⁻¹ ← P⁻¹ + I_z, P⁻¹x ← P⁻¹x + i_z.
Without delay this is the ordinary EKF update; for a measurement that says nothing it changes
nothing; with no update since τ it is exactly filtering z in time order. With updates in between
it is an approximation (their information is taken as one measurement of the state now), which
can give z more weight than in-order filtering would where the motion model is lively: the
prediction noise is the IMM's `carry_noise`. A track that began after κ uses its first estimate
as the prior. A scan captured before the newest scan by more than `LATE_REACH_S` plus its
sensor's delivery delay (a stream backed up by seconds) is not fused at all (`StaleScans`, counted
in `health.fusion.dropped.stale`): carried back that far, a track's gate takes anything, and a
bearing a bird's track took then would call it a drone. Every track's history reaches back as far
as the longest of those limits among the configured sensors, and the second a sensor may stamp
ahead of the node's clock (whose tracks then stand that far beyond the newest scan), so that
whatever is fused finds what its track knew then (a measurement older than the kept history would
count as the track's hit and classify it while its state could not take it). Mode probabilities
are left as they are: an old measurement says little of how the target flies now.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import MeasurementModel, ekf_update
from cuas_node.fusion.models import STATE_DIM, axis_noise, cv_predict
from cuas_node.fusion.tracks import TrackTable
from cuas_node.fusion.verdicts import RecentVerdicts
from cuas_node.kernel.clock import STEP_S

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

LATE_REACH_S = 1.5
"""How late, beyond its sensor's normal delivery delay, a scan may be captured before the newest
scan and still be fused (`StaleScans`): a host busy for a second and a half."""
HISTORY_LENGTH = 16
"""Past estimates kept per track (fixed memory: 16 × 43 floats a slot)."""
HISTORY_SPACING_S = 0.1
"""The closest two kept estimates may be (a 20 Hz radar's every other), less a millisecond (a
10 Hz sensor's stamps 0.1 s apart must not round to 0.0999…), where `HISTORY_LENGTH` of them
reach back far enough; further apart where they would not (`history_gap`)."""


def history_gap(reach_s: float) -> float:
    """How long after the newest kept estimate a track's estimate is kept, for `HISTORY_LENGTH`
    of them to reach `reach_s` back however often it is updated (to a nanosecond's rounding)."""
    return max(HISTORY_SPACING_S - 1e-3, reach_s / (HISTORY_LENGTH - 1) - 1e-9)


class StaleScans:
    """Which radar and array scans are too old to fuse: captured before the newest such scan by
    more than `LATE_REACH_S` and its sensor normally delivers late (`delivery_s`, per sensor: a
    radar's frame period, an array's analysis window; `reach_s`, from the longest of those limits,
    how far back every track's history reaches). A stream
    backed up by seconds (a host too busy to analyse audio as it comes) would otherwise be gated
    against tracks carried back seconds, whose gates then take anything. Remote ID reports (drone
    clocks) and GPS fixes are not asked: they neither judge nor are judged.

    A sensor whose scans are stale most of the time is not backed up for a moment: its clock is
    behind the node's (an uncalibrated `time_offset_s`) or its link is slower than any history
    reaches. Dropping its scans is right, but silently it would look like a sensor that sees
    nothing: `verdicts` (aged by the newest scan) names it, for health to say so."""

    def __init__(self, delivery_s: dict[str, float], verdicts: RecentVerdicts | None = None) -> None:
        self.delivery_s = delivery_s
        self.limit_s = {sensor_id: LATE_REACH_S + delay for sensor_id, delay in delivery_s.items()}
        self.newest_t = -math.inf
        self.verdicts = verdicts or RecentVerdicts()

    @property
    def reach_s(self) -> float:
        """How far back every track's history must reach: the longest limit of any sensor, plus
        `STEP_S`, as far as the core step lets a radar or an array stamp ahead of the node's
        clock (its tracks then stand that far beyond the newest scan, which is never taken beyond
        `now`). (A Remote ID report further ahead, within its drone's clock skew, is fused as of
        `now`: `NodeCore._captured_by`.)"""
        return max(self.limit_s.values(), default=LATE_REACH_S) + STEP_S

    def restarted(self) -> StaleScans:
        """These rules on a wall clock that stepped back: the times are gone, the names kept
        (`RecentVerdicts.restarted`)."""
        return StaleScans(self.delivery_s, self.verdicts.restarted(self.newest_t))

    def stale(self, sensor_id: str, t: float, now: float = math.inf) -> bool:
        """Whether this sensor's scan at t is stale; if not, it may be the newest. The newest is
        never taken beyond `now` (the core step's clock): a sensor stamping ahead of the node
        (the core step admits a second, a wrong positive `time_offset_s` any amount) must not
        make every other sensor's scans look late."""
        limit = self.limit_s.get(sensor_id)
        if limit is None:
            return False
        behind = self.newest_t - t
        stale = behind > limit
        if not stale:
            self.newest_t = max(self.newest_t, min(t, now))
        self.verdicts.add(sensor_id, self.newest_t, behind, stale)
        return stale

    def mostly_stale(self) -> dict[str, float]:
        """Sensors most of whose recent scans were stale, each with how far its stale ones lay
        behind the newest scan (the median, s): `RecentVerdicts.mostly_dropped`."""
        return self.verdicts.mostly_dropped(self.newest_t)


class History:
    """Each track's last `HISTORY_LENGTH` estimates (time, state, covariance), a ring per slot,
    spaced to reach `reach_s` back (`history_gap`)."""

    def __init__(self, capacity: int, reach_s: float = LATE_REACH_S) -> None:
        self.reach_s = reach_s
        self.gap_s = history_gap(reach_s)
        self.t = np.full((capacity, HISTORY_LENGTH), np.inf)
        self.x = np.zeros((capacity, HISTORY_LENGTH, STATE_DIM))
        self.p = np.zeros((capacity, HISTORY_LENGTH, STATE_DIM, STATE_DIM))
        self.newest = np.zeros(capacity, dtype=np.intp)

    def grow(self, capacity: int) -> None:
        """Follow the track table's growth (`TrackTable.reserve`): new slots have no history."""
        old = self.newest.size
        if capacity == old:
            return
        fresh = History(capacity, self.reach_s)
        fresh.t[:old], fresh.x[:old], fresh.p[:old], fresh.newest[:old] = self.t, self.x, self.p, self.newest
        self.t, self.x, self.p, self.newest = fresh.t, fresh.x, fresh.p, fresh.newest

    def start(self, table: TrackTable, slots: IndexArray) -> None:
        """New tracks: their history is their first estimate."""
        self.t[slots] = np.inf
        self.newest[slots] = 0
        self.t[slots, 0] = table.t_state[slots]
        self.x[slots, 0] = table.x[slots]
        self.p[slots, 0] = table.p[slots]

    def remember(self, table: TrackTable, slots: IndexArray) -> None:
        """Keep the current estimate of these tracks where the newest kept is old enough."""
        t = table.t_state[slots]
        due = slots[t - self.t[slots, self.newest[slots]] >= self.gap_s]
        if not due.size:
            return
        ring = (self.newest[due] + 1) % HISTORY_LENGTH
        self.newest[due] = ring
        self.t[due, ring] = table.t_state[due]
        self.x[due, ring] = table.x[due]
        self.p[due, ring] = table.p[due]

    def before(
        self, slots: IndexArray, t: FloatArray, t_created: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """For each track, the newest kept estimate at or before t: x, P, its time, and whether
        there is one to use. When every kept estimate is later than t, the oldest is used only if
        it is the track's first (the track began after t: its first estimate knows nothing of
        what came before); if the ring no longer reaches back to t, there is none."""
        kept = self.t[slots]  # (A, L); inf where empty
        at_or_before = np.where(kept <= t[:, None], kept, -np.inf)
        found = np.isfinite(at_or_before.max(axis=1))
        oldest = np.argmin(kept, axis=1)
        pick = np.where(found, np.argmax(at_or_before, axis=1), oldest)
        t_pick = kept[np.arange(slots.size), pick]
        usable = found | (t_pick <= t_created)
        return self.x[slots, pick], self.p[slots, pick], t_pick, usable


def _symmetric(a: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (a + a.swapaxes(-1, -2)), dtype=np.float64)


def information_now(
    history: History,
    table: TrackTable,
    slots: IndexArray,
    t_meas: FloatArray,
    z: FloatArray,
    r: FloatArray,
    model: MeasurementModel,
    accel_h_mps2: float,
    accel_v_mps2: float,
) -> tuple[FloatArray, FloatArray]:
    """(I_z (A,6,6), i_z (A,6)): what each late measurement (taken at `t_meas`) tells about its
    track's state at the track's current time."""
    noise = axis_noise(accel_h_mps2, accel_v_mps2)
    x_tau, p_tau, t_tau, usable = history.before(slots, t_meas, table.t_created[slots])
    t_now = table.t_state[slots]
    # The prior at the measurement's time; with and without the measurement, carried to now the
    # same way, so that the measurement is their only difference.
    x_prior, p_prior = cv_predict(x_tau, p_tau, t_meas - t_tau, noise)
    x_without, p_without = cv_predict(x_prior, p_prior, t_now - t_meas, noise)
    x_at, p_at, *_ = ekf_update(model, x_prior, p_prior, z, r)
    x_with, p_with = cv_predict(x_at, p_at, t_now - t_meas, noise)
    info_with = np.linalg.inv(p_with)
    info = _symmetric(info_with - np.linalg.inv(p_without))
    # Rounding can leave a direction z says nothing about slightly negative: clip it to zero.
    values, vectors = np.linalg.eigh(info)
    info = (vectors * np.maximum(values, 0.0)[:, None, :]) @ vectors.swapaxes(1, 2)
    # i_z = P⁻¹_with x_with − P⁻¹_without x_without, written with the clipped I_z so that the two
    # stay consistent: I_z x_without + P⁻¹_with (x_with − x_without).
    vector = np.einsum("kij,kj->ki", info, x_without) + np.einsum("kij,kj->ki", info_with, x_with - x_without)
    info[~usable] = 0.0
    vector[~usable] = 0.0
    return info, vector


def add_information(table: TrackTable, slots: IndexArray, info: FloatArray, vector: FloatArray) -> None:
    """Fuse (I_z, i_z) into every IMM model of these tracks, then moment-match."""
    a, n = slots.size, table.n_models
    xm, pm = table.xm[slots], table.pm[slots]
    prior_info = np.linalg.inv(pm)  # (A,R,6,6)
    post = _symmetric(np.asarray(np.linalg.inv(prior_info + info[:, None]), dtype=np.float64))
    xm = np.einsum("kmij,kmj->kmi", post, np.einsum("kmij,kmj->kmi", prior_info, xm) + vector[:, None])
    table.store_models(slots, table.mu[slots], xm.reshape(a, n, STATE_DIM), post)
