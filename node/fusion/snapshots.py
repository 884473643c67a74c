"""Tracks detached from the live arrays: what reports, identity binding and deletions need.

A snapshot outlives its slots (a deleted track is reported after its slot is reused), so it holds
copies. It stays a set of columns, one gathered array per field, all the way to the reports:
reports are built for every track several times a second, and a per-track object per field
would cost more than the filter's own update at a hundred tracks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.tracks import CLASSES, Status, TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class Snapshots:
    """N tracks as the publisher needs them, column by column (row i is one track)."""

    number: list[int]
    status: list[str]
    t: list[float]
    enu: FloatArray  # (N,3)
    vel: FloatArray  # (N,3)
    cov: FloatArray  # (N,3,3) position covariance
    sensors: list[tuple[str, ...]]
    updates: list[int]
    bearing_only: list[bool]
    class_logp: FloatArray  # (N,C)
    evidence_mask: npt.NDArray[np.uint64]
    hover_s: FloatArray
    extent_m: FloatArray
    speed_mps: FloatArray
    speed_sigma_mps: FloatArray
    accel_mps2: FloatArray

    def __len__(self) -> int:
        return len(self.number)

    @staticmethod
    def concat(parts: Sequence[Snapshots]) -> Snapshots | None:
        """One batch of the non-empty `parts` (None when there are none)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        columns: dict[str, object] = {}
        for name in (f.name for f in fields(Snapshots)):
            values = [getattr(p, name) for p in parts]
            arrays = isinstance(values[0], np.ndarray)
            columns[name] = np.concatenate(values) if arrays else [v for c in values for v in c]
        return Snapshots(**columns)  # type: ignore[arg-type]


def take_snapshots(
    tb: TrackTable, slots: IndexArray, sensors_of: Callable[[int], list[str]], deleted: bool = False
) -> Snapshots:
    """Detached copies of the given tracks (fancy indexing copies)."""
    if not slots.size:
        return _empty()
    masks = tb.sensor_mask[slots].tolist()
    names = {m: tuple(sensors_of(int(m))) for m in set(masks)}
    return Snapshots(
        number=tb.number[slots].tolist(),
        status=["deleted"] * slots.size if deleted else [Status.LABELS[v] for v in tb.status[slots].tolist()],
        t=tb.t_state[slots].tolist(),
        enu=tb.x[slots, :3],
        vel=tb.x[slots, 3:],
        cov=tb.p[slots, :3, :3],
        sensors=[names[m] for m in masks],
        updates=tb.updates[slots].tolist(),
        bearing_only=(~np.isfinite(tb.t_ranged[slots])).tolist(),
        class_logp=tb.class_logp[slots],
        evidence_mask=tb.evidence_mask[slots],
        hover_s=tb.hover_s[slots],
        extent_m=tb.extent_m[slots],
        speed_mps=tb.speed_mps[slots],
        speed_sigma_mps=tb.speed_sigma_mps[slots],
        accel_mps2=tb.accel_mps2[slots],
    )


def _empty() -> Snapshots:
    """No tracks (most steps delete none: cheaper than gathering nothing field by field)."""
    floats = [np.zeros(0) for _ in range(5)]
    return Snapshots(
        [], [], [], np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3, 3)), [], [], [],
        np.zeros((0, len(CLASSES))), np.zeros(0, dtype=np.uint64), *floats,
    )  # fmt: skip
