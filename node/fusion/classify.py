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
from enum import IntFlag

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.tracks import CLASSES, PRIOR, TrackTable
from cuas_node.kernel.reports import ClassSummary

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
MULTIROTOR, FIXED_WING, BIRD, AIRCRAFT, UNKNOWN = range(len(CLASSES))
_EVIDENCE_LIMIT = 8.0  # |accumulated log-likelihood| per class, so new evidence can still turn it
_HOVER_SPEED_MPS = 1.0
_HOVER_FULL_S = 2.0  # hovering this long is as much as radar kinematics can say
_HOVER_LOG_BONUS = math.log(30.0)


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


def _normal(x: FloatArray, mean: float, sigma: float) -> FloatArray:
    return np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def kinematic_loglik(speed: FloatArray, extent_m: FloatArray | None = None) -> FloatArray:
    """log p(speed, extent | class) (A, C) from flight envelopes.

    Multirotors: anything from hover to ~25 m/s (a hover peak plus a broad plateau); birds fly
    ~6–20 m/s and cannot hover; fixed-wing UAS need 12–30 m/s; aircraft are fast and large;
    unknown is flat over 0–60 m/s.
    """
    lik = np.empty((speed.shape[0], len(CLASSES)))
    lik[:, MULTIROTOR] = 0.35 * 2.0 * _normal(speed, 0.0, 0.8) + 0.65 * np.where(speed < 25.0, 1 / 25.0, 1e-4)
    lik[:, FIXED_WING] = _normal(speed, 21.0, 6.0)
    lik[:, BIRD] = _normal(speed, 12.0, 4.0)
    lik[:, AIRCRAFT] = _normal(speed, 60.0, 25.0)
    lik[:, UNKNOWN] = 1.0 / 60.0
    if extent_m is not None:
        large = extent_m > 3.0  # radar extent of metres: an aircraft, not a small UAS or bird
        lik[large, AIRCRAFT] *= 20.0
    return np.log(np.maximum(lik, 1e-12))


def posterior(evidence_logp: FloatArray, speed: float, hover_s: float, extent_m: float) -> FloatArray:
    """Log posterior (C,) of one track: prior + independent evidence + kinematics now + hover."""
    logp = PRIOR + evidence_logp + kinematic_loglik(np.array([speed]), np.array([extent_m]))[0]
    logp[MULTIROTOR] += min(hover_s / _HOVER_FULL_S, 1.0) * _HOVER_LOG_BONUS
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


def radar_update(table: TrackTable, slots: IndexArray, extent_m: FloatArray, t: float) -> None:
    """Radar looked at these tracks: note hovering time and the largest extent seen."""
    if slots.size == 0:
        return
    speed = np.linalg.norm(table.x[slots, 3:], axis=1)
    dt = np.clip(t - table.t_kinematics[slots], 0.0, 1.0)
    still = speed < _HOVER_SPEED_MPS
    table.hover_s[slots] = np.where(
        still, table.hover_s[slots] + dt, np.maximum(table.hover_s[slots] - dt, 0.0)
    )
    table.t_kinematics[slots] = t
    table.extent_m[slots] = np.maximum(table.extent_m[slots], extent_m)
    table.evidence_mask[slots] |= np.uint64(int(Evidence.RADAR))


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


def summary(logp: FloatArray, evidence_mask: int) -> ClassSummary:
    """The class posterior as reported: label, confidence, probabilities and evidence sources."""
    prob = np.exp(logp - logp.max())
    prob /= prob.sum()
    best = int(np.argmax(prob))
    return ClassSummary(
        label=CLASSES[best],
        confidence=float(prob[best]),
        probabilities=tuple((name, float(v)) for name, v in zip(CLASSES, prob, strict=True)),
        evidence=tuple(Evidence.names(evidence_mask)),
    )
