"""Where false alarms recur: the clutter map that makes new tracks there prove themselves longer."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_RESCALE_AT = 30.0  # fold the time scale into the grid before exp() of it nears float range
_NEIGHBOUR_DI = np.repeat(np.arange(-1, 2), 3)[None, :]
_NEIGHBOUR_DJ = np.tile(np.arange(-1, 2), 3)[None, :]


class ClutterMap:
    """Where false alarms recur: a decaying count of tentative tracks that died unconfirmed, on a
    horizontal log-polar grid around the node. New tracks born in a hot cell need two more hits to
    confirm, so a flickering reflector stops producing confirmed phantoms, while a real target
    there, which keeps being detected, still confirms a few scans later.

    Nothing in it is a constant of one sensor: it reaches `max_range_m` (the sensors' farthest
    coverage) and its cells are `cell_rad` wide in azimuth and as deep, relative to their range
    (range bins grow geometrically by 1 + `cell_rad` from `min_cell_m`), so a cell spans about
    the same number of the sensor's own resolution cells at 5 m as at 10 km. A cell is hot when its
    3×3 neighbourhood holds `hot_count` deaths (within the half-life). Dense uniform clutter heats
    every cell it covers, which then asks two more hits of every birth there: the price of not
    confirming phantoms where clutter is structured (a background-relative test let multipath
    through in `birds-and-clutter`)."""

    def __init__(
        self,
        max_range_m: float = 1500.0,
        cell_rad: float = math.radians(3.0),
        min_cell_m: float = 1.0,
        half_life_s: float = 120.0,
        hot_count: float = 3.0,
    ) -> None:
        self.max_range_m = max_range_m
        self.cell_rad = cell_rad
        self.min_cell_m = min_cell_m
        self.r0 = min_cell_m / cell_rad  # inside r0 the cells are min_cell_m deep
        self.log_step = math.log1p(cell_rad)
        self.linear = math.ceil(self.r0 / min_cell_m)
        far = math.log(max(max_range_m, self.r0) / self.r0)
        self.n_range = self.linear + math.ceil(far / self.log_step) + 1
        self.n_az = max(math.ceil(2.0 * math.pi / cell_rad), 3)
        self.decay_rate = math.log(2.0) / half_life_s
        self.hot_count = hot_count
        self.grid = np.zeros((self.n_range, self.n_az))
        self.t = -math.inf
        self.t_ref = -math.inf  # the time at which a stored count is its decayed value (`_weight`)

    def _cells(self, enu: FloatArray) -> tuple[IndexArray, IndexArray, BoolArray]:
        rho = np.hypot(enu[:, 0], enu[:, 1])
        far = (
            np.floor(np.log(np.maximum(rho, self.r0) / self.r0) / self.log_step).astype(np.intp) + self.linear
        )
        near = np.floor(rho / self.min_cell_m).astype(np.intp)
        i = np.where(rho < self.r0, near, far)
        j = np.floor((np.arctan2(enu[:, 0], enu[:, 1]) + math.pi) / (2.0 * math.pi) * self.n_az).astype(
            np.intp
        )
        j = j % self.n_az
        inside = (rho <= self.max_range_m) & (i < self.n_range)
        return np.minimum(i, self.n_range - 1), j, inside

    def _weight(self, t: float) -> float:
        """Deaths are stored scaled by exp(rate · (t − t_ref)) and read back divided by it, so that
        time decays the whole grid without touching it every scan; the scale is folded into the
        grid (one multiplication) only when it would grow large."""
        self.t = max(self.t, t)
        if not math.isfinite(self.t_ref):
            self.t_ref = self.t
        exponent = self.decay_rate * (self.t - self.t_ref)
        if exponent > _RESCALE_AT:
            self.grid *= math.exp(-exponent)
            self.t_ref, exponent = self.t, 0.0
        return math.exp(exponent)

    def add(self, enu: FloatArray, t: float) -> None:
        if enu.shape[0] == 0:
            return
        weight = self._weight(t)
        i, j, inside = self._cells(enu)
        np.add.at(self.grid, (i[inside], j[inside]), weight)

    def hot(self, enu: FloatArray, t: float) -> BoolArray:
        """Counted over the 3×3 cells around each point, so a reflector on a cell border is one place."""
        weight = self._weight(t)
        if enu.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        i, j, inside = self._cells(enu)
        ii = np.minimum(np.maximum(i[:, None] + _NEIGHBOUR_DI, 0), self.n_range - 1)
        jj = (j[:, None] + _NEIGHBOUR_DJ) % self.n_az
        total = self.grid[ii, jj].sum(axis=1)
        out: BoolArray = inside & (total >= self.hot_count * weight)
        return out

    def count(self, enu: FloatArray, t: float) -> FloatArray:
        """The decayed count of deaths in each point's own cell at time t (for inspection and tests)."""
        weight = self._weight(t)
        i, j, inside = self._cells(enu)
        return np.where(inside, self.grid[i, j] / weight, 0.0)
