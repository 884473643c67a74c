"""Where false alarms recur: the clutter map that makes new tracks there prove themselves longer."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


class ClutterMap:
    """Where false alarms recur: a decaying count of tentative tracks that died unconfirmed, on a
    horizontal grid. New tracks born in a hot cell need two more hits to confirm, so a flickering
    reflector stops producing confirmed phantoms, while a real target there, which keeps being
    detected, still confirms a few scans later."""

    def __init__(
        self,
        cell_m: float = 10.0,
        half_size_cells: int = 150,
        half_life_s: float = 120.0,
        hot_count: float = 3.0,
    ) -> None:
        self.cell_m = cell_m
        self.half = half_size_cells
        self.decay_rate = math.log(2.0) / half_life_s
        self.hot_count = hot_count
        self.grid = np.zeros((2 * half_size_cells, 2 * half_size_cells))
        self.t = -math.inf

    def _cells(self, enu: FloatArray) -> tuple[IndexArray, IndexArray, BoolArray]:
        ij = np.floor(enu[:, :2] / self.cell_m).astype(np.intp) + self.half
        inside = np.all((ij >= 0) & (ij < 2 * self.half), axis=1)
        return ij[:, 0], ij[:, 1], inside

    def _decay(self, t: float) -> None:
        if math.isfinite(self.t) and t > self.t:
            self.grid *= math.exp(-self.decay_rate * (t - self.t))
        self.t = max(self.t, t)

    def add(self, enu: FloatArray, t: float) -> None:
        if enu.shape[0] == 0:
            return
        self._decay(t)
        i, j, inside = self._cells(enu)
        np.add.at(self.grid, (i[inside], j[inside]), 1.0)

    def hot(self, enu: FloatArray, t: float) -> BoolArray:
        """Counted over the 3×3 cells around each point, so a reflector on a cell border is one place."""
        self._decay(t)
        i, j, inside = self._cells(enu)
        i = np.clip(i, 1, 2 * self.half - 2)
        j = np.clip(j, 1, 2 * self.half - 2)
        total = np.zeros(enu.shape[0])
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                total += self.grid[i + di, j + dj]
        out: BoolArray = inside & (total >= self.hot_count)
        return out
