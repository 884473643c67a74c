"""The first multi-target tracker: EKF on a constant-velocity model, GNN assignment, M-of-N logic.

Components are kept separate (predict, gate, assign, update, initiate, maintain) in the Stone Soup
manner, but each acts on every track at once through the structure-of-arrays `TrackTable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.stats import chi2

from calibration.pose import Pose
from node.config import FusionSection
from node.fusion.models import (
    RADAR_DIM,
    predict,
    radar_innovation,
    radar_noise,
    radar_predict,
    radar_to_state,
)
from node.fusion.tracks import Status, TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
_UNGATED_COST = 1e9
_INITIAL_SPEED_SIGMA_MPS = 15.0


@dataclass(frozen=True, slots=True)
class RadarGeometry:
    """What the tracker must know about a radar: where it is and what it can see."""

    sensor_id: str
    pose: Pose
    max_range_m: float
    fov_az_rad: float = math.radians(60.0)
    fov_el_rad: float = math.radians(45.0)


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


@dataclass(frozen=True, slots=True)
class RadarScan:
    """All detections of one radar frame, stacked: z (M,4) = range, az, el, radial; sigmas (M,4)."""

    sensor_id: str
    t: float
    z: FloatArray
    sigmas: FloatArray


class Tracker:
    def __init__(self, params: FusionSection, sensor_ids: list[str]) -> None:
        self.params = params
        self.table = TrackTable(params.max_tracks)
        self.sensor_bits = {sid: i for i, sid in enumerate(sensor_ids[:64])}
        self.sensor_ids = list(sensor_ids[:64])
        self.gate = float(chi2.ppf(params.gate_probability, RADAR_DIM))
        self.window_mask = np.uint32((1 << params.confirm_n) - 1)

    # -- components -------------------------------------------------------------------------
    def _predict_to(self, active: IndexArray, t: float) -> None:
        tb = self.table
        dt = np.clip(t - tb.t_state[active], 0.0, None)
        x, p = tb.x[active], tb.p[active]
        predict(x, p, dt, self.params.process_accel_mps2, self.params.process_accel_vertical_mps2)
        tb.x[active], tb.p[active] = x, p
        tb.t_state[active] = np.maximum(tb.t_state[active], t)

    def _gate(
        self, active: IndexArray, scan: RadarScan, geometry: RadarGeometry
    ) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray, FloatArray, FloatArray]:
        """Likelihood costs (K,M), gate mask (K,M), innovations (K,M,4), S⁻¹ (K,M,4,4), H (K,4,6)."""
        tb = self.table
        z_pred, h = radar_predict(tb.x[active], geometry.pose)
        s0 = h @ tb.p[active] @ h.transpose(0, 2, 1)
        s = s0[:, None, :, :] + radar_noise(scan.sigmas)[None, :, :, :]
        nu = radar_innovation(scan.z[None, :, :], z_pred[:, None, :])
        s_inv = np.asarray(np.linalg.inv(s), dtype=np.float64)
        d2 = np.einsum("kmi,kmij,kmj->km", nu, s_inv, nu)
        _, logdet = np.linalg.slogdet(s)
        gated: npt.NDArray[np.bool_] = d2 < self.gate
        cost: FloatArray = np.where(gated, d2 + logdet, _UNGATED_COST)
        return cost, gated, nu, s_inv, h

    @staticmethod
    def _assign(
        cost: FloatArray, gated: npt.NDArray[np.bool_], rows: IndexArray, cols: IndexArray
    ) -> list[tuple[int, int]]:
        """Global nearest neighbour over a sub-block; returns (row, col) indices into the full matrix."""
        if rows.size == 0 or cols.size == 0:
            return []
        sub = cost[np.ix_(rows, cols)]
        r, c = linear_sum_assignment(sub)
        keep = gated[rows[r], cols[c]]
        return list(zip(rows[r][keep].tolist(), cols[c][keep].tolist(), strict=True))

    def _update(
        self, slots: IndexArray, nu: FloatArray, s_inv: FloatArray, h: FloatArray, r_meas: FloatArray
    ) -> None:
        """Batched EKF update in Joseph form (stays symmetric positive definite)."""
        tb = self.table
        p = tb.p[slots]
        ht = h.transpose(0, 2, 1)
        gain = p @ ht @ s_inv
        tb.x[slots] += np.einsum("aij,aj->ai", gain, nu)
        i_kh = np.eye(p.shape[1])[None] - gain @ h
        tb.p[slots] = i_kh @ p @ i_kh.transpose(0, 2, 1) + gain @ r_meas @ gain.transpose(0, 2, 1)

    # -- a radar frame ----------------------------------------------------------------------
    def process_radar(self, scan: RadarScan, geometry: RadarGeometry) -> None:
        tb = self.table
        bit = self.sensor_bits.get(scan.sensor_id, 63)
        active = tb.active()
        if active.size:
            self._predict_to(active, scan.t)
        m = scan.z.shape[0]
        used = np.zeros(m, dtype=bool)
        near_track: npt.NDArray[np.bool_] = np.zeros(m, dtype=bool)
        updated = np.zeros(active.size, dtype=bool)
        if active.size and m:
            cost, gated, nu, s_inv, h = self._gate(active, scan, geometry)
            near_track = np.asarray(gated.any(axis=0))
            status = tb.status[active]
            firm = np.flatnonzero(status != Status.TENTATIVE)
            pairs = self._assign(cost, gated, firm, np.arange(m))
            taken = {c for _, c in pairs}
            free_cols = np.array([c for c in range(m) if c not in taken], dtype=np.intp)
            pairs += self._assign(cost, gated, np.flatnonzero(status == Status.TENTATIVE), free_cols)
            if pairs:
                rows = np.array([r for r, _ in pairs], dtype=np.intp)
                cols = np.array([c for _, c in pairs], dtype=np.intp)
                self._update(
                    active[rows], nu[rows, cols], s_inv[rows, cols], h[rows], radar_noise(scan.sigmas[cols])
                )
                used[cols] = True
                updated[rows] = True
            self._record_hits(active, updated, scan, geometry, bit)
        self._initiate(scan, geometry, ~used & ~near_track, bit)

    def _record_hits(
        self,
        active: IndexArray,
        updated: npt.NDArray[np.bool_],
        scan: RadarScan,
        geometry: RadarGeometry,
        bit: int,
    ) -> None:
        """Shift the M-of-N window of tracks this radar should have seen; promote and refresh hit ones."""
        tb = self.table
        z_pred, _ = radar_predict(tb.x[active], geometry.pose)
        in_view = (
            (z_pred[:, 0] <= geometry.max_range_m)
            & (np.abs(z_pred[:, 1]) <= geometry.fov_az_rad)
            & (np.abs(z_pred[:, 2]) <= geometry.fov_el_rad)
        ) | updated
        seen = active[in_view]
        tb.hits[seen] = (
            (tb.hits[seen] << np.uint32(1)) | updated[in_view].astype(np.uint32)
        ) & self.window_mask
        hit = active[updated]
        tb.t_update[hit] = scan.t
        tb.updates[hit] += 1
        tb.sensor_mask[hit] |= np.uint64(1 << bit)
        tb.changed[hit] = True
        confirm = hit[
            (tb.status[hit] != Status.CONFIRMED)
            & (
                (tb.status[hit] == Status.COASTING)
                | (np.bitwise_count(tb.hits[hit]) >= self.params.confirm_m)
            )
        ]
        tb.status[confirm] = Status.CONFIRMED

    def _initiate(
        self, scan: RadarScan, geometry: RadarGeometry, mask: npt.NDArray[np.bool_], bit: int
    ) -> None:
        if not mask.any():
            return
        x, p = radar_to_state(scan.z[mask], scan.sigmas[mask], geometry.pose, _INITIAL_SPEED_SIGMA_MPS)
        keep = _distinct(x[:, :3], np.trace(p[:, :3, :3], axis1=1, axis2=2))
        self.table.allocate(x[keep], p[keep], scan.t, bit)

    # -- housekeeping -----------------------------------------------------------------------
    def maintain(self, t: float) -> list[TrackSnapshot]:
        """Coast, and delete tracks unseen too long or whose covariance blew up.

        Returns the last state of every deleted track that had been confirmed, so that its deletion
        can be published once.
        """
        tb = self.table
        active = tb.active()
        if not active.size:
            return []
        age = t - tb.t_update[active]
        status = tb.status[active]
        sigma = np.sqrt(np.max(np.linalg.eigvalsh(tb.p[active][:, :3, :3]), axis=1))
        drop_tentative = (status == Status.TENTATIVE) & (age > self.params.tentative_delete_after_s)
        firm = status != Status.TENTATIVE
        drop_firm = firm & ((age > self.params.delete_after_s) | (sigma > self.params.max_position_sigma_m))
        coast = (status == Status.CONFIRMED) & (age > self.params.coast_after_s) & ~drop_firm
        tb.status[active[coast]] = Status.COASTING
        tb.changed[active[coast]] = True
        deleted = self.snapshot(active[drop_firm], deleted=True)
        tb.release(active[drop_tentative | drop_firm])
        return deleted

    def snapshot(self, slots: IndexArray, deleted: bool = False) -> list[TrackSnapshot]:
        tb = self.table
        return [
            TrackSnapshot(
                number=int(tb.number[s]),
                status="deleted" if deleted else Status(int(tb.status[s])).label,
                t=float(tb.t_state[s]),
                enu=tb.x[s, :3].copy(),
                vel=tb.x[s, 3:].copy(),
                cov=tb.p[s, :3, :3].copy(),
                sensors=self.sensors_of(int(tb.sensor_mask[s])),
                updates=int(tb.updates[s]),
            )
            for s in slots.tolist()
        ]

    def publishable(self, include_tentative: bool) -> IndexArray:
        tb = self.table
        if include_tentative:
            return tb.active()
        return np.flatnonzero((tb.status == Status.CONFIRMED) | (tb.status == Status.COASTING))

    def sensors_of(self, mask: int) -> list[str]:
        return [sid for sid, b in self.sensor_bits.items() if mask & (1 << b)]


def _distinct(positions: FloatArray, variance_sum: FloatArray) -> npt.NDArray[np.bool_]:
    """Keep one new track per object: a candidate within 3 sigma of an earlier one in the same scan
    is the same object split by the clusterer, and two tentative twins would both confirm."""
    n = positions.shape[0]
    if n < 2:
        return np.ones(n, dtype=bool)
    d2 = np.sum((positions[:, None, :] - positions[None, :, :]) ** 2, axis=2)
    close = d2 < 9.0 * (variance_sum[:, None] + variance_sum[None, :]) / 3.0
    earlier_close = np.tril(close, k=-1).any(axis=1)
    keep = np.ones(n, dtype=bool)
    for j in np.flatnonzero(earlier_close):  # only the rare split objects reach this loop
        keep[j] = not (close[j, :j] & keep[:j]).any()
    return keep
