"""Which tracks have shown that their object moves: a reflector (a mast, a roof edge, a tree) never
does.

A radar's detection probability is learnt from the established tracks it should have seen
(`management.TrackManager.record`). A flickering reflector's track, once confirmed, taught it
the reflector's own rate: at a site with 20 of them (plots in 5-50 % of scans; the benchmark's
`--reflectors`) a radar's learnt Pd fell from 0.8 to 0.55 within seconds, and with it what a
miss costs every track, so that dim reflectors confirmed and dead tracks lived longer. Only tracks
that have moved teach it: their velocity was once known to differ from zero at the false-track
probability α (its Mahalanobis distance from zero over the χ² quantile of 3 degrees of freedom),
which an object standing still passes with chance about α a look, or its position was once known
to be away from where the track began, by the same test on the two positions' uncertainties
(a slow target of a slow radar: at 1 Hz a track's velocity is known to a few m/s, so 2 m/s is
never known to be motion, but a minute of it is 120 m). A drone that has never moved since its
track began (hovering from its first plot) teaches nothing until it does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

from cuas_node.fusion.tracks import TrackTable

IndexArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]


def moved_bar(alpha: float) -> float:
    """The squared Mahalanobis distance of a velocity from zero that a still object exceeds with
    chance α."""
    return float(chi2.isf(alpha, 3))


def note_motion(table: TrackTable, slots: IndexArray, bar: float) -> None:
    """Mark the tracks among `slots` whose velocity is now known to differ from zero, or whose
    position is known to differ from where they began (`moved_bar`). Asked only of those not yet
    marked: after their first seconds, the few that stand still."""
    still = slots[~table.moved[slots]]
    if still.size == 0:
        return
    v = table.x[still, 3:]
    away = table.x[still, :3] - table.x_born[still]
    spread = table.p_born[still] + table.p[still, :3, :3]  # (the two are correlated: a safe bound)
    moved = (_squared(v, table.p[still, 3:, 3:]) > bar) | (_squared(away, spread) > bar)
    table.moved[still[moved]] = True


def _squared(d: FloatArray, cov: FloatArray) -> FloatArray:
    """d' cov⁻¹ d per row."""
    return np.asarray(np.einsum("ki,ki->k", d, np.linalg.solve(cov, d[..., None])[..., 0]))


class StillSpots:
    """Where established tracks that never moved ended: the places of the site's reflectors.

    With the radar's Pd learnt from moving tracks only, a reflector seen in a fifth of the scans
    no longer holds its track (misses cost what they cost a target): it ends, and the reflector's
    next plots started a new track that confirmed again (the benchmark's `--reflectors 20`, two
    30 s runs of lr-20x10: 62 false confirmed tracks became 91). A track born where one ended, within its gate
    (`near`), confirms only once it has moved (`TrackManager.record`): a reflector never does; a
    drone there does at once, unless it hovers on the very spot, and then only when it moves.
    Each spot is forgotten `MEMORY_S` after its last ending (a reflector renews it); at most
    `MAX_SPOTS` are kept, the oldest dropped."""

    MEMORY_S = 600.0
    MAX_SPOTS = 512

    def __init__(self, gate: float) -> None:
        self.gate = gate  # squared Mahalanobis distance of a birth from a spot (the tracker's gate)
        self.x = np.zeros((0, 3))
        self.p = np.zeros((0, 3, 3))
        self.t = np.zeros(0)

    def add(self, x: FloatArray, p: FloatArray, t: float) -> None:
        if not x.shape[0]:
            return
        keep = self.t > t - self.MEMORY_S
        self.x = np.concatenate([self.x[keep], x])[-self.MAX_SPOTS :]
        self.p = np.concatenate([self.p[keep], p])[-self.MAX_SPOTS :]
        self.t = np.concatenate([self.t[keep], np.full(x.shape[0], t)])[-self.MAX_SPOTS :]

    def add_ends(self, table: TrackTable, ended: IndexArray, radar_mask: np.uint64, t: float) -> None:
        """Of the established tracks that ended, a reflector's mark a spot: never moved, ranged,
        seen by radars alone (no Remote ID, no sound), not a twin (a duplicate of another track
        ends as soon as it is known)."""
        still = ended[
            ~table.moved[ended]
            & np.isfinite(table.t_ranged[ended])
            & ((table.sensor_mask[ended] & ~radar_mask) == 0)
            & (table.twin_of[ended] < 0)
        ]
        self.add(table.x[still, :3], table.p[still, :3, :3], t)

    def near(self, x: FloatArray, p: FloatArray, t: float) -> npt.NDArray[np.bool_]:
        """Births (positions, covariances) within the gate of a spot remembered at t."""
        live = self.t > t - self.MEMORY_S
        near = np.zeros(x.shape[0], dtype=bool)
        if not x.shape[0] or not live.any():
            return near
        d = x[:, None, :] - self.x[None, live]  # (births, spots, 3)
        # Only pairs that could be within the gate are solved for: d' S⁻¹ d ≥ |d|² / trace(S).
        trace = np.trace(p, axis1=1, axis2=2)[:, None] + np.trace(self.p[live], axis1=1, axis2=2)[None]
        i, j = np.nonzero(np.einsum("bsk,bsk->bs", d, d) < self.gate * trace)
        inside = _squared(d[i, j], p[i] + self.p[live][j]) < self.gate
        near[i[inside]] = True
        return near
