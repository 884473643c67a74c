"""Where a track's target is against the coverage of the sensors that could update it: the odds
that it is inside, from how many of the track's own σ its predicted position lies beyond the
nearest violated limit (`TrackManager.maintain` deletes a track that has left the coverage once a
present target inside would have been missed that long with probability α / odds)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr

from cuas_node.fusion.measurement_models import MeasurementModel, PositionVelocityModel
from cuas_node.fusion.models import largest_eigenvalue
from cuas_node.fusion.sensor_stats import is_radar
from cuas_node.fusion.tracks import TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


def predicted(tb: TrackTable, active: IndexArray, t: float) -> FloatArray:
    """Positions at `t` on each track's constant-velocity line."""
    return np.asarray(tb.x[active, :3] + tb.x[active, 3:] * (t - tb.t_state[active])[:, None])


def inside_odds(
    tb: TrackTable, models: Mapping[int, MeasurementModel], active: IndexArray, where: FloatArray
) -> FloatArray:
    """Odds that each target is inside the coverage of some sensor that could update it: Φ(−z)
    over Φ(z), z how far its predicted position is beyond the nearest coverage's violated
    limit in σ of the track's own uncertainty along that limit (a radar's range or angle; the
    largest position σ for other sensors). ∞ inside; a sensor that fed the track and has no
    coverage (Remote ID) covers it. `models`: each sensor bit's measurement model."""
    z = np.full(active.size, np.inf)
    sigma: FloatArray | None = None  # the largest position σ, for the sensors that need it
    for bit, model in models.items():
        if isinstance(model, PositionVelocityModel):
            z[(tb.sensor_mask[active] >> np.uint64(bit)) & np.uint64(1) == 1] = -np.inf
        elif is_radar(model):
            # Only the sign of z matters for a point inside (odds ∞): the σ along each limit
            # (the measurement's Jacobian) are asked only of the points past some limit (a
            # few, if any).
            past = np.flatnonzero(~model.coverage.contains(model.pose, where))
            z_radar = np.full(active.size, -np.inf)
            if past.size:
                pred, h = model.predict(np.concatenate([where[past], tb.x[active[past], 3:]], axis=1))
                h = h[:, :3]
                sig = np.sqrt(np.maximum(np.einsum("kij,kjl,kil->ik", h, tb.p[active[past]], h), 1e-12))
                z_radar[past] = model.coverage.sigmas_beyond(pred[:, 0], pred[:, 1], pred[:, 2], sig)
            z = np.minimum(z, z_radar)
        else:
            d = model.coverage.distance_outside(model.pose, where)
            if sigma is None:
                sigma = np.sqrt(np.maximum(largest_eigenvalue(tb.p[active, :3, :3]), 0.0))
            z = np.minimum(z, np.where(d > 0.0, d / np.maximum(sigma, 1e-9), -np.inf))
    with np.errstate(over="ignore"):
        odds = np.exp(log_ndtr(-z) - log_ndtr(z))
    return np.asarray(np.where(z > 0.0, odds, np.inf), dtype=np.float64)
