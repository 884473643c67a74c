"""The practical speed floor: a minimal vectorised numpy GNN-EKF for one radar at the origin.

What any multi-target tracker must do per scan, and nothing more: constant-velocity prediction of
every track at once (white acceleration noise, separate vertical), EKF update with the spherical
measurement (range, azimuth, elevation and, for a 4-D radar, range-rate; analytic Jacobians),
Mahalanobis gating, one `scipy.optimize.linear_sum_assignment` per scan (confirmed tracks choose
first, tentative ones share the rest), M-of-N confirmation, deletion after consecutive misses, and
a tentative track per unassigned detection. No IMM, no classification, no clutter map, no
reporting: a lower bound on the cost of a useful tracker written in numpy, against which the
node's tracker is measured (benchmarks/tracker_vs_stonesoup.py).

States are [x, y, z, vx, vy, vz] in the radar's frame (x right, y boresight, z up); azimuth from
boresight towards +x, as in `cuas_node.kernel.measurement.RadarDetection`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.stats import chi2

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

_FAR = 1e9
_TWO_PI = 2.0 * np.pi
_AXES = np.arange(3)


@dataclass(frozen=True)
class GnnParams:
    sigma: tuple[float, ...]  # measurement 1σ: range, az, el[, range-rate]
    accel_h_mps2: float = 3.0
    accel_v_mps2: float = 1.0
    gate_probability: float = 0.999
    confirm_m: int = 4
    confirm_n: int = 6
    delete_misses: int = 8  # consecutive missed scans that delete a confirmed track
    initial_speed_sigma_mps: float = 15.0
    initial_climb_sigma_mps: float = 15.0  # the vertical velocity's 1σ at birth


def predict_measurement(x: FloatArray, dim: int) -> tuple[FloatArray, FloatArray]:
    """h(x) (K, dim) and its Jacobian (K, dim, 6)."""
    px, py, pz = x[:, 0], x[:, 1], x[:, 2]
    rho2 = np.maximum(px * px + py * py, 1e-9)
    rho = np.sqrt(rho2)
    r2 = rho2 + pz * pz
    r = np.sqrt(r2)
    k = x.shape[0]
    z = np.empty((k, dim))
    z[:, 0], z[:, 1], z[:, 2] = r, np.arctan2(px, py), np.arctan2(pz, rho)
    h = np.zeros((k, dim, 6))
    h[:, 0, :3] = x[:, :3] / r[:, None]
    h[:, 1, 0], h[:, 1, 1] = py / rho2, -px / rho2
    h[:, 2, 0], h[:, 2, 1], h[:, 2, 2] = -px * pz / (r2 * rho), -py * pz / (r2 * rho), rho / r2
    if dim == 4:
        rdot = np.einsum("ki,ki->k", x[:, :3], x[:, 3:]) / r
        z[:, 3] = rdot
        h[:, 3, :3] = x[:, 3:] / r[:, None] - (rdot / r2)[:, None] * x[:, :3]
        h[:, 3, 3:] = x[:, :3] / r[:, None]
    return z, h


def pair_distances(z: FloatArray, z_pred: FloatArray, s_inv: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Innovations (D, K, M) of every (track, detection) pair, azimuth (row 1) wrapped to [−π, π],
    and their νᵀ S⁻¹ ν (K, M), for detections z (M, D), predictions z_pred (K, D) and S⁻¹ (K, D, D).

    The pairs are laid out contiguously and the quadratic form summed term by term into one buffer:
    a (K, M, D) layout runs numpy's loops D elements long, and the one-line
    einsum("kmi,kij,kmj->km") takes numpy's unoptimised path, several times slower at 100 × 110
    pairs (docs/evaluation.md, "What the benchmark measured too kindly")."""
    nu = np.ascontiguousarray(z.T)[:, None, :] - np.ascontiguousarray(z_pred.T)[:, :, None]
    nu[1] -= _TWO_PI * np.rint(nu[1] / _TWO_PI)
    dim = z.shape[1]
    weight = s_inv * (2.0 - np.eye(dim))  # off-diagonal terms count twice
    d2 = np.zeros(nu.shape[1:])
    term = np.empty(nu.shape[1:])
    for i in range(dim):
        for j in range(i, dim):
            np.multiply(nu[i], nu[j], out=term)
            term *= weight[:, i, j, None]
            d2 += term
    return nu, d2


class NumpyGnn:
    """Tracks in fixed arrays grown as needed; `step(t, z)` returns the confirmed positions."""

    def __init__(self, params: GnnParams) -> None:
        self.p = params
        self.dim = len(params.sigma)
        self.r = np.diag(np.asarray(params.sigma) ** 2)
        self.gate = float(chi2.ppf(params.gate_probability, self.dim))
        self.accel2 = np.array([params.accel_h_mps2, params.accel_h_mps2, params.accel_v_mps2]) ** 2
        self.x = np.zeros((0, 6))
        self.cov = np.zeros((0, 6, 6))
        self.hits = np.zeros(0, dtype=np.uint32)  # last confirm_n looks, bit 0 the newest
        self.misses = np.zeros(0, dtype=np.intp)
        self.confirmed = np.zeros(0, dtype=bool)
        self.ids = np.zeros(0, dtype=np.intp)
        self.looks = np.zeros(0, dtype=np.intp)  # scans seen, up to confirm_n
        self.t = 0.0
        self._next_id = 0

    def _predict(self, dt: float) -> None:
        """x ← F x, P ← F P Fᵀ + Q in place, F = [[I, dt I], [0, I]] applied by its blocks (a
        broadcast product of every track's P by one F costs several times more)."""
        if dt <= 0 or not self.x.shape[0]:
            return
        self.x[:, :3] += dt * self.x[:, 3:]
        c = self.cov
        c[:, :3, :] += dt * c[:, 3:, :]
        c[:, :, :3] += dt * c[:, :, 3:]
        a2, i = self.accel2, _AXES
        c[:, i, i] += a2 * dt**3 / 3
        c[:, i + 3, i + 3] += a2 * dt
        c[:, i, i + 3] += a2 * dt**2 / 2
        c[:, i + 3, i] += a2 * dt**2 / 2

    def _initiate(self, z: FloatArray) -> None:
        """One tentative track per detection: position from the measurement (its covariance mapped
        through the Jacobian), velocity along the line of sight at the range-rate (4-D) or at rest,
        with the broad speed prior (`initial_climb_sigma_mps` vertically)."""
        m = z.shape[0]
        if not m:
            return
        r, az, el = z[:, 0], z[:, 1], z[:, 2]
        ce, se, ca, sa = np.cos(el), np.sin(el), np.cos(az), np.sin(az)
        los = np.stack([ce * sa, ce * ca, se], axis=1)
        j = np.zeros((m, 3, 3))
        j[:, :, 0] = los
        j[:, 0, 1], j[:, 1, 1] = r * ce * ca, -r * ce * sa
        j[:, 0, 2], j[:, 1, 2], j[:, 2, 2] = -r * se * sa, -r * se * ca, r * ce
        x = np.zeros((m, 6))
        x[:, :3] = r[:, None] * los
        if self.dim == 4:
            x[:, 3:] = los * z[:, 3:4]
        cov = np.zeros((m, 6, 6))
        cov[:, :3, :3] = j @ self.r[:3, :3] @ j.transpose(0, 2, 1)
        cov[:, 3:, 3:] = np.diag(
            [self.p.initial_speed_sigma_mps**2] * 2
            + [min(self.p.initial_speed_sigma_mps, self.p.initial_climb_sigma_mps) ** 2]
        )
        self.x = np.concatenate([self.x, x])
        self.cov = np.concatenate([self.cov, cov])
        self.hits = np.concatenate([self.hits, np.ones(m, dtype=np.uint32)])
        self.misses = np.concatenate([self.misses, np.zeros(m, dtype=np.intp)])
        self.looks = np.concatenate([self.looks, np.ones(m, dtype=np.intp)])
        self.confirmed = np.concatenate([self.confirmed, np.zeros(m, dtype=bool)])
        self.ids = np.concatenate([self.ids, self._next_id + np.arange(m)])
        self._next_id += m

    def step(self, t: float, z: FloatArray) -> None:
        """Fuse one scan (M, dim) taken at time t (s)."""
        self._predict(t - self.t)
        self.t = t
        k, m = self.x.shape[0], z.shape[0]
        assigned = np.full(k, -1, dtype=np.intp)
        if k and m:
            z_pred, h = predict_measurement(self.x, self.dim)
            s = h @ self.cov @ h.transpose(0, 2, 1) + self.r
            s_inv = np.linalg.inv(s)
            nu, d2 = pair_distances(z, z_pred, s_inv)
            gated = d2 < self.gate
            cost = np.where(gated, d2 + np.linalg.slogdet(s)[1][:, None], _FAR)
            free = np.ones(m, dtype=bool)
            for rows in (np.flatnonzero(self.confirmed), np.flatnonzero(~self.confirmed)):
                cols = np.flatnonzero(free)
                if not rows.size or not cols.size:
                    continue
                block = gated[np.ix_(rows, cols)]  # only rows and columns with a gated pair
                rows, cols = rows[block.any(axis=1)], cols[block.any(axis=0)]
                if not rows.size:
                    continue
                ri, ci = linear_sum_assignment(cost[np.ix_(rows, cols)])
                ok = gated[rows[ri], cols[ci]]
                assigned[rows[ri[ok]]] = cols[ci[ok]]
                free[cols[ci[ok]]] = False
            upd = np.flatnonzero(assigned >= 0)
            if upd.size:
                gain = self.cov[upd] @ h[upd].transpose(0, 2, 1) @ s_inv[upd]
                innov = nu[:, upd, assigned[upd]].T
                self.x[upd] += np.einsum("kij,kj->ki", gain, innov)
                self.cov[upd] = (np.eye(6) - gain @ h[upd]) @ self.cov[upd]
        else:
            free = np.ones(m, dtype=bool)
        hit = assigned >= 0
        self.hits = ((self.hits << np.uint32(1)) | hit.astype(np.uint32)) & np.uint32(
            (1 << self.p.confirm_n) - 1
        )
        self.misses = np.where(hit, 0, self.misses + 1)
        self.confirmed |= np.bitwise_count(self.hits) >= self.p.confirm_m
        # A tentative track that can no longer make M of N, a confirmed one missed too often: gone.
        self.looks = np.minimum(self.looks + 1, self.p.confirm_n)
        missed_in_window = self.looks - np.bitwise_count(self.hits).astype(np.intp)
        lost = np.where(
            self.confirmed,
            self.misses >= self.p.delete_misses,
            missed_in_window > self.p.confirm_n - self.p.confirm_m,
        )
        if lost.any():
            keep = ~lost
            self.x, self.cov, self.hits = self.x[keep], self.cov[keep], self.hits[keep]
            self.misses, self.confirmed, self.ids = self.misses[keep], self.confirmed[keep], self.ids[keep]
            self.looks = self.looks[keep]
        self._initiate(z[free])

    def confirmed_tracks(self) -> tuple[IntArray, FloatArray]:
        """Ids and positions (K, 3) of the confirmed tracks."""
        return self.ids[self.confirmed], np.asarray(self.x[self.confirmed, :3], dtype=np.float64)
