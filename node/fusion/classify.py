"""Per-track Bayesian class posterior: multirotor, fixed-wing, bird, aircraft, unknown.

Each sensor contributes a likelihood over the classes; scans of one sensor are strongly
correlated (the same bird seen twenty times a second is not twenty independent witnesses), so
radar evidence is tempered by a small exponent, and every posterior keeps a floor so that new
evidence can still turn it. "Drone" needs positive evidence: radar kinematics alone can only say
slow-and-hovering, which birds rarely do, so it nudges rather than decides.
"""

from __future__ import annotations

import math
from enum import IntFlag

import numpy as np
import numpy.typing as npt

from node.fusion.tracks import CLASSES, TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
MULTIROTOR, FIXED_WING, BIRD, AIRCRAFT, UNKNOWN = range(len(CLASSES))
_LOG_FLOOR = math.log(1e-3)
_RADAR_WEIGHT = 0.05  # tempering of one radar scan's kinematic evidence


class Evidence(IntFlag):
    RADAR = 1
    ACOUSTIC = 2
    REMOTE_ID = 4
    FPV = 8

    @classmethod
    def names(cls, mask: int) -> list[str]:
        return [
            name
            for flag, name in (
                (cls.RADAR, "radar_kinematics"),
                (cls.ACOUSTIC, "acoustic"),
                (cls.REMOTE_ID, "remote_id"),
                (cls.FPV, "fpv_video"),
            )
            if mask & flag
        ]


def _normal(x: FloatArray, mean: float, sigma: float) -> FloatArray:
    return np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def kinematic_loglik(speed: FloatArray, extent_m: FloatArray | None = None) -> FloatArray:
    """log p(speed, extent | class) (A, C) from typical flight envelopes.

    Multirotors cruise slowly and hover (a half-normal at zero); birds fly 6–20 m/s and cannot
    hover; fixed-wing UAS need 12–30 m/s; aircraft are fast and large. Unknown is flat.
    """
    lik = np.empty((speed.shape[0], len(CLASSES)))
    lik[:, MULTIROTOR] = 2.0 * _normal(speed, 0.0, 9.0)
    lik[:, FIXED_WING] = _normal(speed, 21.0, 6.0)
    lik[:, BIRD] = _normal(speed, 12.0, 4.0)
    lik[:, AIRCRAFT] = _normal(speed, 60.0, 25.0)
    lik[:, UNKNOWN] = 1.0 / 80.0
    if extent_m is not None:
        large = extent_m > 3.0  # radar extent of metres: an aircraft, not a small UAS or bird
        lik[large, AIRCRAFT] *= 20.0
    return np.log(np.maximum(lik, 1e-12))


def apply(
    table: TrackTable, slots: IndexArray, loglik: FloatArray, weight: float, evidence: Evidence
) -> None:
    """Bayes update of the given tracks' class posteriors by tempered log-likelihoods (A, C)."""
    if slots.size == 0:
        return
    logp = table.class_logp[slots] + weight * loglik
    logp -= logp.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    logp = np.maximum(logp, _LOG_FLOOR)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    table.class_logp[slots] = logp
    table.evidence_mask[slots] |= np.uint64(int(evidence))


def radar_update(table: TrackTable, slots: IndexArray, extent_m: FloatArray | None = None) -> None:
    speed = np.linalg.norm(table.x[slots, 3:], axis=1)
    apply(table, slots, kinematic_loglik(speed, extent_m), _RADAR_WEIGHT, Evidence.RADAR)


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


def summary(logp: FloatArray, evidence_mask: int) -> dict[str, object]:
    """The published `class` object: label, confidence, probabilities and evidence sources."""
    prob = np.exp(logp - logp.max())
    prob /= prob.sum()
    best = int(np.argmax(prob))
    return {
        "label": CLASSES[best],
        "confidence": round(float(prob[best]), 3),
        "probabilities": {name: round(float(v), 3) for name, v in zip(CLASSES, prob, strict=True)},
        "evidence": Evidence.names(evidence_mask),
    }
