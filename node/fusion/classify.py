"""Per-track Bayesian class posterior: multirotor, fixed-wing, bird, aircraft, unknown.

Two kinds of evidence, treated differently on purpose:
- independent looks (the acoustic detector, a Remote ID broadcast, FPV video nearby) accumulate
  as log-likelihoods, each tempered, with a floor so later evidence can still turn them;
- radar kinematics are *not* accumulated scan by scan: twenty scans a second of the same bird are
  one observation of its flight, not twenty witnesses. The posterior uses the current (filtered)
  speed once, plus the time the track has spent hovering, which birds cannot do.
Radar alone therefore says "bird" for bird-like flight and "multirotor" for hovering, and leaves
slow forward flight "unknown": a confident drone label needs positive evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntFlag

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from cuas_node.fusion.models import largest_eigenvalue
from cuas_node.fusion.tracks import CLASSES, PRIOR, TrackTable
from cuas_node.kernel.reports import ClassSummary

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
MULTIROTOR, FIXED_WING, BIRD, AIRCRAFT, UNKNOWN = range(len(CLASSES))
_EVIDENCE_LIMIT = 8.0  # |accumulated log-likelihood| per class, so new evidence can still turn it
_HOVER_SPEED_MPS = 1.0
_HOVER_FULL_S = 2.0  # hovering this long is as much as radar kinematics can say
_HOVER_LOG_BONUS = math.log(30.0)
_ACCEL_WINDOW_S = 0.5
_KINEMATICS_MAX_SIGMA_V_MPS = 5.0
_ACCEL_MAX_SIGMA_V_MPS = 2.0  # velocity known worse than this: its changes are not accelerations


class Evidence(IntFlag):
    RADAR = 1
    ACOUSTIC = 2
    REMOTE_ID = 4
    FPV = 8

    @classmethod
    def names(cls, mask: int) -> list[str]:
        pairs = (
            (cls.RADAR, "radar_kinematics"),
            (cls.ACOUSTIC, "acoustic"),
            (cls.REMOTE_ID, "remote_id"),
            (cls.FPV, "fpv_video"),
        )
        return [name for flag, name in pairs if mask & flag]


def _pdf(x: FloatArray, mean: float, sigma: FloatArray) -> FloatArray:
    return np.asarray(np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)))


@dataclass(frozen=True, slots=True)
class Kinematics:
    """What radar tracking says of each track's flight (arrays (N,)): its speed and the speed's
    uncertainty when last known well (NaN: never; a coasting track keeps what it was seen doing),
    the recent acceleration (NaN when not known well enough), radar extent and time spent
    hovering. Columns, because reports are built for every track at once."""

    speed_mps: FloatArray
    speed_sigma_mps: FloatArray
    accel_mps2: FloatArray
    extent_m: FloatArray
    hover_s: FloatArray


def kinematic_loglik(k: Kinematics) -> FloatArray:
    """log p(speed, acceleration, extent | class) (N,C) from flight envelopes, each widened by the
    speed estimate's own uncertainty (a badly known speed says little about anything).

    Speed: multirotors anywhere from 0 to ~25 m/s; fixed-wing UAS 12-30; birds 5-20; aircraft fast.
    `unknown` (people, vehicles, balloons, kites, debris, clutter that fooled the tracker) is flat
    over 0-60 m/s. A speed never known well (a track kept alive by sparse or stray detections has
    a velocity that is a guess) says nothing about the class. (Slow flight alone does not make a
    drone label either: see `summary`.) Acceleration: each class has an envelope (multirotors turn
    and stop hardest); an acceleration beyond every envelope (a track hopping between stray
    detections) points to `unknown`, which is flat to 50 m/s². Hovering itself is evidence only
    through `hover_s` (`posterior`).
    """
    known = np.isfinite(k.speed_mps)
    s = np.where(known, k.speed_mps, 0.0)
    sig = np.maximum(k.speed_sigma_mps, 1e-3)
    lik = np.empty((s.shape[0], len(CLASSES)))
    # Uniform on [0, 25] convolved with the estimate's Gaussian error.
    lik[:, MULTIROTOR] = (ndtr((25.0 - s) / sig) - ndtr(-s / sig)) / 25.0
    lik[:, FIXED_WING] = _pdf(s, 21.0, np.hypot(6.0, sig))
    lik[:, BIRD] = _pdf(s, 12.0, np.hypot(4.0, sig))
    lik[:, AIRCRAFT] = _pdf(s, 60.0, np.hypot(25.0, sig))
    lik[:, UNKNOWN] = 1.0 / 60.0
    accel = known & np.isfinite(k.accel_mps2)
    a = np.abs(np.where(accel, k.accel_mps2, 0.0))
    for cls, scale in _ACCEL_SCALE_MPS2.items():  # half-normal envelopes
        lik[accel, cls] *= 2.0 * _pdf(a[accel], 0.0, np.full(a[accel].shape, scale))
    lik[accel, UNKNOWN] *= 1.0 / 50.0
    lik[~known] = 1.0
    lik[k.extent_m > 3.0, AIRCRAFT] *= 20.0  # radar extent of metres: an aircraft, not a small UAS or bird
    return np.log(np.maximum(lik, 1e-12))


_ACCEL_SCALE_MPS2 = {MULTIROTOR: 8.0, FIXED_WING: 6.0, BIRD: 5.0, AIRCRAFT: 3.0}
_DRONE_EVIDENCE = int(Evidence.ACOUSTIC | Evidence.REMOTE_ID | Evidence.FPV)


def posterior(evidence_logp: FloatArray, k: Kinematics) -> FloatArray:
    """Log posterior (N,C): prior + independent evidence + kinematics now + hover."""
    logp = PRIOR + evidence_logp + kinematic_loglik(k)
    logp[:, MULTIROTOR] += np.minimum(k.hover_s / _HOVER_FULL_S, 1.0) * _HOVER_LOG_BONUS
    return logp


def apply(
    table: TrackTable, slots: IndexArray, loglik: FloatArray, weight: float, evidence: Evidence
) -> None:
    """Accumulate tempered log-likelihoods (A, C) of independent evidence into the given tracks."""
    if slots.size == 0:
        return
    acc = table.class_logp[slots] + weight * loglik
    acc -= acc.max(axis=1, keepdims=True)
    table.class_logp[slots] = np.maximum(acc, -_EVIDENCE_LIMIT)
    table.evidence_mask[slots] |= np.uint64(int(evidence))


def radar_update(
    table: TrackTable, slots: IndexArray, extent_m: FloatArray, t: float, window_hits: int
) -> None:
    """Radar looked at these tracks: note hovering time and the largest extent seen.

    Hovering is only counted for a track that is *known* to stand still: its speed below
    `_HOVER_SPEED_MPS` with a velocity uncertainty below that too, and hit by the radar in at least
    `window_hits` of its recent scans. A track that lost its target and is kept alive by stray
    detections also looks slow, but its velocity is a guess: that is not a hovering drone."""
    if slots.size == 0:
        return
    velocity = table.x[slots, 3:]
    speed = np.sqrt(np.einsum("ki,ki->k", velocity, velocity))
    dt = np.clip(t - table.t_kinematics[slots], 0.0, 1.0)
    sigma_v = np.sqrt(np.maximum(largest_eigenvalue(table.p[slots, 3:, 3:]), 0.0))
    steady = np.bitwise_count(table.hits[slots]) >= window_hits
    still = (speed < _HOVER_SPEED_MPS) & (sigma_v < _HOVER_SPEED_MPS) & steady
    table.hover_s[slots] = np.where(
        still, table.hover_s[slots] + dt, np.maximum(table.hover_s[slots] - dt, 0.0)
    )
    table.t_kinematics[slots] = t
    known = slots[sigma_v <= _KINEMATICS_MAX_SIGMA_V_MPS]
    table.speed_mps[known] = speed[sigma_v <= _KINEMATICS_MAX_SIGMA_V_MPS]
    table.speed_sigma_mps[known] = sigma_v[sigma_v <= _KINEMATICS_MAX_SIGMA_V_MPS]
    _sample_acceleration(table, slots[steady & (sigma_v < _ACCEL_MAX_SIGMA_V_MPS)], t)
    # Extent smoothed over frames: one cluster that merged a bird with clutter is not an aircraft.
    table.extent_m[slots] = 0.8 * table.extent_m[slots] + 0.2 * extent_m
    table.evidence_mask[slots] |= np.uint64(int(Evidence.RADAR))


def _sample_acceleration(table: TrackTable, slots: IndexArray, t: float) -> None:
    """Acceleration of steadily tracked tracks: the change of the filtered velocity over at least
    `_ACCEL_WINDOW_S` (shorter spans would measure the filter's noise), smoothed over samples."""
    if slots.size == 0:
        return
    span = t - table.t_accel[slots]
    first = ~np.isfinite(table.t_accel[slots])
    due = slots[(span >= _ACCEL_WINDOW_S) & ~first]
    if due.size:
        change = table.x[due, 3:] - table.v_accel[due]
        a = np.sqrt(np.einsum("ki,ki->k", change, change)) / (t - table.t_accel[due])
        previous = table.accel_mps2[due]
        table.accel_mps2[due] = np.where(np.isfinite(previous), 0.6 * previous + 0.4 * a, a)
    fresh = np.concatenate([due, slots[first]])
    table.v_accel[fresh] = table.x[fresh, 3:]
    table.t_accel[fresh] = t


def acoustic_update(table: TrackTable, slots: IndexArray, drone_likelihood: FloatArray) -> None:
    """The detector's drone likelihood L: odds L/(1−L) for multirotor against everything else."""
    lik = np.clip(drone_likelihood, 0.02, 0.98)
    loglik = np.zeros((slots.shape[0], len(CLASSES)))
    loglik[:, MULTIROTOR] = np.log(lik)
    loglik[:, [FIXED_WING, BIRD, AIRCRAFT, UNKNOWN]] = np.log(1.0 - lik)[:, None]
    loglik[:, FIXED_WING] = 0.5 * (loglik[:, MULTIROTOR] + loglik[:, FIXED_WING])  # propellers too
    apply(table, slots, loglik, 0.3, Evidence.ACOUSTIC)


def remote_id_update(table: TrackTable, slots: IndexArray, ua_type: str | None) -> None:
    """A Remote ID broadcast says "I am a UAS", and of which type."""
    loglik = np.full((slots.shape[0], len(CLASSES)), math.log(0.02))
    if ua_type in ("aeroplane", "glider", "fixed_wing"):
        loglik[:, FIXED_WING] = 0.0
        loglik[:, MULTIROTOR] = math.log(0.2)
    else:
        loglik[:, MULTIROTOR] = 0.0
        loglik[:, FIXED_WING] = math.log(0.3)
    apply(table, slots, loglik, 1.0, Evidence.REMOTE_ID)


def fpv_update(table: TrackTable, slots: IndexArray) -> None:
    """Analog 5.8 GHz video nearby: someone is flying an FPV drone, probably this one."""
    loglik = np.zeros((slots.shape[0], len(CLASSES)))
    loglik[:, [BIRD, AIRCRAFT]] = math.log(0.3)
    loglik[:, UNKNOWN] = math.log(0.6)
    apply(table, slots, loglik, 0.2, Evidence.FPV)


def summaries(
    logp: FloatArray, evidence_logp: FloatArray, evidence_mask: npt.NDArray[np.uint64], hover_s: FloatArray
) -> list[ClassSummary]:
    """Class posteriors (N,C) as reported: label, confidence, probabilities and evidence sources.

    The label is a decision, not only the most probable class: a drone label (multirotor,
    fixed_wing) needs positive evidence of a drone (the drone-sound detector, a Remote ID
    broadcast, FPV video, or a sustained, steadily tracked hover). Speed alone, from a radar, fits
    a bird, a vehicle, clutter that fooled the tracker, or a drone: without such evidence a most
    probable drone class is published as `unknown`, with the probability of `unknown` as its
    confidence (the probabilities still show what kinematics suggest). Evidence counts as positive
    only where what it said leans to a drone (`evidence_logp`, the accumulated independent
    evidence without kinematics or prior): a bird's chirp heard by the array with a drone
    likelihood of 0.3 is evidence the track is not a drone, not licence to call it one."""
    prob = np.exp(logp - logp.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    best = np.argmax(prob, axis=1)
    mask = evidence_mask.astype(np.int64)
    drone_side = np.maximum(evidence_logp[:, MULTIROTOR], evidence_logp[:, FIXED_WING])
    other_side = evidence_logp[:, [BIRD, AIRCRAFT, UNKNOWN]].max(axis=1)
    positive = ((mask & _DRONE_EVIDENCE) != 0) & (drone_side >= other_side)
    unsupported = ((best == MULTIROTOR) | (best == FIXED_WING)) & ~positive
    best[unsupported & (hover_s < _HOVER_FULL_S)] = UNKNOWN
    confidence = prob[np.arange(best.shape[0]), best]
    names = {m: tuple(Evidence.names(m)) for m in set(mask.tolist())}
    return [
        ClassSummary(
            label=CLASSES[b],
            confidence=c,
            probabilities=tuple(zip(CLASSES, row, strict=True)),
            evidence=names[m],
        )
        for b, c, row, m in zip(best.tolist(), confidence.tolist(), prob.tolist(), mask.tolist(), strict=True)
    ]
