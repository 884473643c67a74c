"""Tracks detached from the live arrays: what reports, identity binding and deletions need.

A snapshot outlives its slot (a deleted track is reported after its slot is reused), so it holds
copies, gathered column by column: one numpy call per field, not per track, because reports are
built for every track several times a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.tracks import PRIOR, Status, TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class TrackSnapshot:
    """One track as the publisher needs it, detached from the live arrays."""

    number: int
    status: str
    t: float
    enu: FloatArray
    vel: FloatArray
    cov: FloatArray
    sensors: list[str]
    updates: int
    bearing_only: bool = False
    class_logp: FloatArray = field(default_factory=lambda: np.zeros(PRIOR.shape))
    evidence_mask: int = 0
    hover_s: float = 0.0
    extent_m: float = 0.0
    speed_mps: float = math.nan
    speed_sigma_mps: float = 0.0
    accel_mps2: float = math.nan


def take_snapshots(
    tb: TrackTable, slots: IndexArray, sensors_of: Callable[[int], list[str]], deleted: bool = False
) -> list[TrackSnapshot]:
    """Detached copies of the given tracks, gathered column by column (one numpy call per
    field, not per track: reports are built for every track several times a second)."""
    if slots.size == 0:
        return []
    status = ["deleted"] * slots.size if deleted else [Status.LABELS[v] for v in tb.status[slots].tolist()]
    masks = tb.sensor_mask[slots].tolist()
    sensors = {m: sensors_of(int(m)) for m in set(masks)}
    columns = zip(
        tb.number[slots].tolist(),
        status,
        tb.t_state[slots].tolist(),
        tb.x[slots, :3].copy(),
        tb.x[slots, 3:].copy(),
        tb.p[slots, :3, :3].copy(),
        masks,
        tb.updates[slots].tolist(),
        (~np.isfinite(tb.t_ranged[slots])).tolist(),
        tb.class_logp[slots].copy(),
        tb.evidence_mask[slots].tolist(),
        tb.hover_s[slots].tolist(),
        tb.extent_m[slots].tolist(),
        tb.speed_mps[slots].tolist(),
        tb.speed_sigma_mps[slots].tolist(),
        tb.accel_mps2[slots].tolist(),
        strict=True,
    )
    return [
        TrackSnapshot(
            number=number,
            status=label,
            t=t,
            enu=enu,
            vel=vel,
            cov=cov,
            sensors=list(sensors[mask]),
            updates=updates,
            bearing_only=bearing_only,
            class_logp=logp,
            evidence_mask=evidence,
            hover_s=hover,
            extent_m=extent,
            speed_mps=speed,
            speed_sigma_mps=speed_sigma,
            accel_mps2=accel,
        )
        for (
            number,
            label,
            t,
            enu,
            vel,
            cov,
            mask,
            updates,
            bearing_only,
            logp,
            evidence,
            hover,
            extent,
            speed,
            speed_sigma,
            accel,
        ) in columns
    ]
