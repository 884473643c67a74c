"""What gating found in one scan: the (track, measurement) pairs inside each track's gate, with
the quantities the assignment, the updates and the soft (JPDA) update share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class Gating:
    """The gated (track row, measurement) pairs of a scan, as lists (P pairs), and the mask."""

    gated: BoolArray  # (K,M)
    ki: IndexArray  # (P,) track rows of the gated pairs
    mj: IndexArray  # (P,) their measurements
    cost: FloatArray  # (P,) −2 log-likelihood up to a constant
    loglik: FloatArray  # (P,) log N(ν; 0, S)
    nu: FloatArray  # (P,D) innovations
    h: FloatArray  # (K,D,6) Jacobians at the predicted states
    hph: FloatArray  # (K,D,D)
    z_pred: FloatArray  # (K,D) predicted measurements
    rate_extra: FloatArray | None  # (K,) second-order range-rate variance (`imm.gate_quantities`)

    def dense(self, values: FloatArray, fill: float) -> FloatArray:
        """Per-pair values (P, ...) spread over the (K, M, ...) grid, `fill` outside the gate."""
        out = np.full((*self.gated.shape, *values.shape[1:]), fill)
        out[self.ki, self.mj] = values
        return out
