"""Global nearest-neighbour assignment over the gated (track, measurement) pairs of a scan.

Most pairs stand alone: the only measurement in a track's gate and in no other track's gate.
Any optimal assignment takes such a pair (trading it for an ungated one only adds cost), so it
is taken directly; the Hungarian solver (`linear_sum_assignment`) sees only the small block of
tracks and measurements that really compete, instead of every track by every detection.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
_UNGATED_COST = 1e9  # a pair outside the gate: chosen only where nothing gated is left


def assign(ki: IndexArray, mj: IndexArray, cost: FloatArray, eligible: BoolArray) -> IndexArray:
    """Indices of the chosen pairs among the `eligible` gated pairs (track row `ki`, measurement
    `mj`, `cost` −2 log-likelihood): at most one per track and one per measurement, the most
    pairs, then the least total cost."""
    idx = np.flatnonzero(eligible)
    if idx.size == 0:
        return idx
    k, m = ki[idx], mj[idx]
    alone = (np.bincount(k)[k] == 1) & (np.bincount(m)[m] == 1)
    if alone.all():
        return idx
    rest = idx[~alone]
    rows, row_of = np.unique(ki[rest], return_inverse=True)
    cols, col_of = np.unique(mj[rest], return_inverse=True)
    block = np.full((rows.size, cols.size), _UNGATED_COST)
    block[row_of, col_of] = cost[rest]
    pair = np.full((rows.size, cols.size), -1, dtype=np.intp)
    pair[row_of, col_of] = rest
    r, c = linear_sum_assignment(block)
    chosen = pair[r, c]
    return np.concatenate([idx[alone], chosen[chosen >= 0]])
