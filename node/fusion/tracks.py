"""Structure-of-arrays track table: every track's state lives in preallocated numpy arrays.

Why SoA: the hot path (predict, gate, update) is then a handful of batched numpy calls whatever
the number of tracks. The arrays start at `INITIAL_CAPACITY` slots and double when a birth finds
no free slot, up to the configured `max_tracks`: a quiet site keeps a small table, a swarm of
hundreds gets its tracks, and the memory stays bounded by configuration, not by traffic.
Each track carries an IMM: one state and covariance per motion model plus the model
probabilities; `x` and `p` hold the moment-matched combination used for gating and output.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.models import STATE_DIM
from cuas_node.fusion.sensor_stats import N_SENSORS

FloatArray = npt.NDArray[np.float64]

CLASSES = ("multirotor", "fixed_wing", "bird", "aircraft", "unknown")
PRIOR = np.log(np.array([0.2, 0.1, 0.2, 0.1, 0.4]))


class Status:
    """A slot's state, as the plain ints stored in `TrackTable.status`. Not an IntEnum: numpy
    compares a whole array with a plain int five times faster than with an enum member, and the
    hot path makes dozens of such comparisons per scan."""

    FREE = 0
    TENTATIVE = 1
    CONFIRMED = 2
    COASTING = 3
    LABELS = ("free", "tentative", "confirmed", "coasting")


INITIAL_CAPACITY = 256
SAME_OBJECT_SIGMAS = 3.0  # two detections of one scan this near (`distinct`) are one object split


class TrackTable:
    """Slot arrays that grow by doubling up to `limit`; a slot is in use when its status is not
    FREE. Slots never move: a slot index stays valid while its track lives."""

    def __init__(
        self, limit: int, n_models: int, initial_mode: npt.ArrayLike, capacity: int | None = None
    ) -> None:
        self.limit = limit
        capacity = min(limit, INITIAL_CAPACITY) if capacity is None else capacity
        self.capacity = capacity
        self.n_models = n_models
        self.initial_mode = np.asarray(initial_mode, dtype=np.float64)
        self.x = np.zeros((capacity, STATE_DIM))
        self.p = np.zeros((capacity, STATE_DIM, STATE_DIM))
        self.xm = np.zeros((capacity, n_models, STATE_DIM))
        self.pm = np.zeros((capacity, n_models, STATE_DIM, STATE_DIM))
        self.mu = np.zeros((capacity, n_models))
        self.status = np.zeros(capacity, dtype=np.int8)
        self.number = np.zeros(capacity, dtype=np.int64)  # the public id's running number
        self.t_state = np.zeros(capacity)  # time the state estimate refers to
        self.t_update = np.zeros(capacity)  # last measurement update of any kind
        self.t_ranged = np.full(capacity, -np.inf)  # last update by a ranging sensor (radar, Remote ID)
        self.t_physical = np.full(capacity, -np.inf)  # last update by a non-cooperative sensor
        self.x_physical = np.zeros((capacity, 3))  # ... and where it was then (`claims`)
        self.t_claimed = np.full(capacity, -np.inf)  # last Remote ID report holding it (`claimed`)
        self.t_created = np.zeros(capacity)
        self.x_born = np.zeros((capacity, 3))  # where it started (first ranged: `fed`)
        self.moved = np.zeros(capacity, dtype=bool)  # since beyond a sensor's noise of there (`management`)
        self.t_swept = np.zeros(capacity)  # its last look by a scanning radar's sweep (`sweep`)
        self.t_sweep_hit = np.zeros(capacity)  # ... of those, its last hit
        self.hits = np.zeros(capacity, dtype=np.uint32)  # M-of-N history, newest in bit 0
        self.extra_hits = np.zeros(capacity, dtype=np.int8)  # more hits needed where clutter recurs
        self.outlive_s = np.zeros(capacity)  # how long it must live to confirm (`ClutterMap.outlive_s`)
        self.score = np.zeros(capacity)  # track score: log-likelihood ratio target/false (initiation.py)
        # Evidence that its target is gone, in nats: misses in plain view less the hits since, never
        # below 0 (a CUSUM of the track score: `TrackManager.record`).
        self.absence = np.zeros(capacity)
        self.absent = np.zeros(capacity, dtype=bool)  # that evidence says its target is gone
        # Misses per sensor not yet known to be real: counted towards the sensor's Pd only once
        # the track holds its target again (`TrackManager.record`).
        self.unproven_misses = np.zeros((capacity, N_SENSORS), dtype=np.int32)
        self.twin_of = np.full(capacity, -1, dtype=np.intp)  # an older track on its target (`twins`)
        self.twin_scans = np.zeros(capacity, dtype=np.int32)  # full scans in a row it looked a twin
        self.updates = np.zeros(capacity, dtype=np.int64)
        self.sensor_mask = np.zeros(capacity, dtype=np.uint64)  # which sensors contributed
        self.evidence_mask = np.zeros(capacity, dtype=np.uint64)  # which evidence kinds classified it
        # Accumulated log-likelihoods of the independent evidence (acoustic, Remote ID, FPV); the
        # kinematic part is recomputed from the state at output, not accumulated scan by scan.
        self.class_logp = np.zeros((capacity, len(CLASSES)))
        self.hover_s = np.zeros(capacity)  # time spent (nearly) still: birds cannot, multirotors do
        self.t_kinematics = np.zeros(capacity)
        self.extent_m = np.zeros(capacity)  # radar extent, smoothed over frames
        self.speed_mps = np.full(capacity, np.nan)  # last speed known well enough to classify by
        self.speed_sigma_mps = np.zeros(capacity)
        self.accel_mps2 = np.full(capacity, np.nan)  # smoothed acceleration (NaN: not known yet)
        self.v_accel = np.zeros((capacity, 3))  # velocity at the last acceleration sample
        self.t_accel = np.full(capacity, np.nan)
        self.changed = np.zeros(capacity, dtype=bool)
        self.bearing_sigma_rad = np.full(capacity, np.pi)  # of the bearings that updated it last
        # Its plots' evidence of a wrapping radar's range-rate alias (`alias_evidence`): the radar's
        # bit (−1: none yet), its last plot's time and radial speed followed, and the sums of the fit.
        self.alias_bit = np.full(capacity, -1, dtype=np.int16)
        self.alias_t = np.zeros(capacity)
        self.alias_u = np.zeros(capacity)
        self.alias_los = np.zeros((capacity, 3))  # ... and its line of sight from that radar then
        self.alias_v = np.zeros((capacity, 3))  # ... and its velocity then (less its alias moves)
        self.alias_sums = np.zeros((capacity, 7))
        self.contradicted = np.zeros(capacity, dtype=bool)  # its fit showed its range-rate contradicted
        self._next_number = 1

    def active(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.status != Status.FREE)

    def continue_numbering(self, previous: TrackTable) -> None:
        """Number new tracks after `previous`'s (a table that replaces it: a public id is never
        reused within a session)."""
        self._next_number = max(self._next_number, previous._next_number)

    def reserve(self, births: int) -> bool:
        """Grow (doubling, up to `limit`) until `births` slots are free or the limit is reached;
        True when the table grew (the caller's slot-sized companions, e.g. `late.History`, then
        follow `capacity`)."""
        free = int(np.count_nonzero(self.status == Status.FREE))
        capacity = self.capacity
        while free + capacity - self.capacity < births and capacity < self.limit:
            capacity = min(2 * capacity, self.limit)
        if capacity == self.capacity:
            return False
        fresh = TrackTable(self.limit, self.n_models, self.initial_mode, capacity)
        for name, column in vars(self).items():
            if isinstance(column, np.ndarray) and name != "initial_mode":
                getattr(fresh, name)[: self.capacity] = column
                setattr(self, name, getattr(fresh, name))
        self.capacity = capacity
        return True

    def allocate(
        self,
        x: npt.NDArray[np.float64],
        p: npt.NDArray[np.float64],
        t: float,
        sensor_bit: int,
        ranging: bool,
        physical: bool = True,
    ) -> npt.NDArray[np.intp]:
        """Start tentative tracks in free slots; returns the slots used (may be fewer than asked).
        `ranging`, `physical`: what the starting sensor is (`fed`, `t_physical`)."""
        slots = np.flatnonzero(self.status == Status.FREE)[: x.shape[0]]
        n = slots.shape[0]
        self.x[slots] = x[:n]
        self.p[slots] = p[:n]
        self.xm[slots] = x[:n, None, :]
        self.pm[slots] = p[:n, None, :, :]
        self.mu[slots] = self.initial_mode
        self.status[slots] = Status.TENTATIVE
        self.number[slots] = np.arange(self._next_number, self._next_number + n)
        self._next_number += n
        self.t_state[slots] = t
        self.t_update[slots] = self.t_ranged[slots] = self.t_physical[slots] = self.t_claimed[slots] = -np.inf
        self.fed(slots, t, ranging)
        if physical:
            self.t_physical[slots], self.x_physical[slots] = t, x[:n, :3]
        self.t_created[slots] = t
        self.x_born[slots] = x[:n, :3]
        self.moved[slots] = False
        self.t_swept[slots] = t
        self.t_sweep_hit[slots] = t
        self.hits[slots] = 1
        self.extra_hits[slots] = 0
        self.outlive_s[slots] = 0.0
        self.score[slots] = 0.0
        self.absence[slots] = 0.0
        self.absent[slots] = False
        self.unproven_misses[slots] = 0
        self.twin_of[slots] = -1
        self.twin_scans[slots] = 0
        self.updates[slots] = 1
        self.sensor_mask[slots] = np.uint64(1 << sensor_bit)
        self.evidence_mask[slots] = 0
        self.class_logp[slots] = 0.0
        self.hover_s[slots] = 0.0
        self.bearing_sigma_rad[slots] = np.pi
        self.t_kinematics[slots] = t
        self.extent_m[slots] = 0.0
        self.accel_mps2[slots] = np.nan
        self.speed_mps[slots] = np.nan
        self.t_accel[slots] = np.nan
        self.changed[slots] = True
        self.alias_bit[slots] = -1
        self.contradicted[slots] = False
        return slots

    def fed(
        self, slots: npt.NDArray[np.intp], t: float, ranging: bool, ranged: npt.NDArray[np.intp] | None = None
    ) -> None:
        """A sensor's measurement at `t` updated these tracks: their last update, and of a ranging
        sensor (a late measurement makes none older than it was). `ranged`: the tracks a ranging
        sensor updated, when not all of them count as fed (`Tracker._record_hits`): any of its
        plots gives a track a range. Physical support is the manager's to judge
        (`TrackManager.record`)."""
        self.t_update[slots] = np.maximum(self.t_update[slots], t)
        if ranging:
            ranged = slots if ranged is None else ranged
            first = ranged[~np.isfinite(self.t_ranged[ranged])]  # a bearing-only start's range was a guess
            self.x_born[first] = self.x[first, :3]
            self.t_ranged[ranged] = np.maximum(self.t_ranged[ranged], t)

    def combine(
        self,
        slots: npt.NDArray[np.intp],
        mu: FloatArray | None = None,
        xm: FloatArray | None = None,
        pm: FloatArray | None = None,
    ) -> None:
        """Moment-match each track's model mixture into `x`, `p`. The caller that has just
        written `mu`, `xm`, `pm` of these slots passes them (no second gather)."""
        mu = self.mu[slots] if mu is None else mu
        xm = self.xm[slots] if xm is None else xm
        pm = self.pm[slots] if pm is None else pm
        k, n = mu.shape
        x = (mu[:, None, :] @ xm)[:, 0]
        self.x[slots] = x
        p = (mu[:, None, :] @ pm.reshape(k, n, STATE_DIM * STATE_DIM)).reshape(k, STATE_DIM, STATE_DIM)
        self.p[slots] = p + mixture_spread(mu, xm, x)

    def store_models(
        self, slots: npt.NDArray[np.intp], mu: FloatArray, xm: FloatArray, pm: FloatArray
    ) -> None:
        """An update's result for these tracks: each model's weight, mean and covariance (made
        exactly symmetric: the update's rounding is not), then their moment-matched `x`, `p`."""
        pm = 0.5 * (pm + pm.swapaxes(-1, -2))
        self.mu[slots], self.xm[slots], self.pm[slots] = mu, xm, pm
        self.combine(slots, mu, xm, pm)

    def along_bearing(self, slots: npt.NDArray[np.intp], seen: FloatArray) -> npt.NDArray[np.bool_]:
        """Whether points (N,3 ENU) lie in the direction of the tracks in `slots` from the node,
        within three standard deviations of the bearings that updated each last."""
        x = self.x[slots, :3]
        norms = np.linalg.norm(seen, axis=1) * np.linalg.norm(x, axis=1)
        cos = np.einsum("ij,ij->i", seen, x) / np.maximum(norms, 1e-9)
        return np.asarray(np.arccos(np.clip(cos, -1.0, 1.0)) <= 3.0 * self.bearing_sigma_rad[slots])

    def release(self, slots: npt.NDArray[np.intp]) -> None:
        self.status[slots] = Status.FREE
        self.changed[slots] = False


def keep_speed(w: FloatArray, xm: FloatArray, x: FloatArray) -> FloatArray:
    """The mixture `x` (…,6) of model means `xm` (…,R,6) under weights `w` (…,R) (leading axes
    broadcast, as `mixture_spread`'s), with its horizontal speed the weighted mean of the models'
    speeds, its heading theirs averaged: a mixture in speed and heading, not in east and north.
    The turning models predict the same speed as the straight one, in other headings; averaged
    as vectors, their velocities are shorter than any of them (by cos of the turn between two
    scans: 2 % at 1 Hz and 11.5 °/s), and where plots update velocity little (1 Hz, a 1° radar
    at 3 km) each scan's loss added up: an outside test's tracks read 10 % slow, 8 m behind.
    Where the models' headings disagree widely (a resultant under half their mean speed: two
    equal models 120° apart; a new track, a reversal) the vector mean stands. Used by the IMM's interaction
    step (`imm.mix_and_predict`), whose loss feeds back; the published mixture (`combine`) is
    the plain one: in speed and heading there too, the noisier turning models' speeds (noise only
    lengthens a vector) read fast (that test: +1.1 m/s of 15 with it, +0.1 without)."""
    speeds = np.hypot(xm[..., 3], xm[..., 4])
    mean_speed = np.sum(w * speeds, axis=-1)
    resultant = np.hypot(x[..., 3], x[..., 4])
    agree = resultant >= 0.5 * mean_speed
    scale = np.where(agree, mean_speed / np.maximum(resultant, 1e-12), 1.0)
    x[..., 3:5] *= scale[..., None]
    return x


def mixture_spread(w: FloatArray, xm: FloatArray, x: FloatArray) -> FloatArray:
    """Σ_i w_i (x_i − x)(x_i − x)ᵀ (…,6,6), the spread of the model means about their mixture x
    (weights w (…,R), means xm (…,R,6), mixture x (…,6); leading axes broadcast, so that IMM
    mixing passes each track's means once for all its mixtures)."""
    d = xm - x[..., None, :]
    return np.asarray((d * w[..., None]).swapaxes(-1, -2) @ d)


def distinct(positions: FloatArray, variance_sum: FloatArray) -> npt.NDArray[np.bool_]:
    """Keep one new track per object: a candidate within 3 sigma of an earlier one in the same scan
    is the same object split by the clusterer, and two tentative twins would both confirm."""
    n = positions.shape[0]
    if n < 2:
        return np.ones(n, dtype=bool)
    d2 = np.sum((positions[:, None, :] - positions[None, :, :]) ** 2, axis=2)
    limit = SAME_OBJECT_SIGMAS**2 * (variance_sum[:, None] + variance_sum[None, :]) / 3.0
    return first_of_each(d2 < limit)


def first_of_each(close: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Of candidates in order, those no earlier kept one is `close` to (a symmetric (n, n) mask):
    the first of each object's detections."""
    n = close.shape[0]
    later, earlier = np.nonzero(close)
    earlier_close = np.zeros(n, dtype=bool)
    earlier_close[later[earlier < later]] = True
    keep = np.ones(n, dtype=bool)
    for j in np.flatnonzero(earlier_close):  # only the rare split objects reach this loop
        keep[j] = not (close[j, :j] & keep[:j]).any()
    return keep
