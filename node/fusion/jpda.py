"""Joint probabilistic data association, cheaply: the soft update of established tracks that
compete for the same detections, where a hard nearest-neighbour choice would be a guess (two
drones a few metres apart, a split cluster). The tracker's gating supplies the likelihoods."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.gating import Gating
from cuas_node.fusion.tracks import TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


def shared_rows(is_firm: BoolArray, ki: IndexArray, mj: IndexArray, dt: FloatArray) -> IndexArray:
    """Established tracks (rows where `is_firm`) that compete for a gated measurement (gated
    pairs `ki`, `mj`) and are in sequence: where a hard choice is a guess, they get a JPDA-style
    soft update instead."""
    firm = is_firm[ki]
    ki, mj = ki[firm], mj[firm]
    if ki.size < 2:
        return np.zeros(0, dtype=np.intp)
    contested = np.bincount(mj)[mj] >= 2
    rows = np.unique(ki[contested])
    return rows[dt[rows] == 0.0]


def soft_update(
    table: TrackTable,
    active: IndexArray,
    rows: IndexArray,
    g: Gating,
    r: FloatArray,
    p_d: float,
    clutter: float | FloatArray,
) -> None:
    """Cheap JPDA (Fitzgerald): β_ij = G_ij / (T_i + M_j − G_ij + B), with G the detection-
    weighted likelihoods, T_i and M_j their track and measurement sums and B the clutter
    density (the sensor's, `sensor_stats`; per measurement where the site has reflectors); then
    the PDA update with the spread-of-innovations term. Vectorised over the contested tracks
    (`rows` of the gating's (K, M) arrays, `active` their slots); their IMM models are
    collapsed to the result (cluster members only). `g`: the scan's gating."""
    gated, nu, h, hph = g.gated, g.dense(g.nu, 0.0), g.h, g.hph
    like = np.where(gated, p_d * np.exp(g.dense(g.loglik, -np.inf)), 0.0)  # (K,M)
    t_sum = like.sum(axis=1, keepdims=True)
    m_sum = like.sum(axis=0, keepdims=True)
    beta = like / np.maximum(t_sum + m_sum - like + clutter, 1e-300)
    beta = beta[rows]  # (A,M)
    beta0 = np.clip(1.0 - beta.sum(axis=1), 0.0, 1.0)
    nu = nu[rows]  # (A,M,D)
    h = h[rows]
    r_mean = np.einsum("am,mij->aij", beta, r) / np.maximum(beta.sum(axis=1), 1e-12)[:, None, None]
    slots = active[rows]
    p = table.p[slots]
    s = hph[rows] + r_mean
    gain = p @ h.transpose(0, 2, 1) @ np.linalg.inv(s)
    nu_bar = np.einsum("am,amd->ad", beta, nu)
    spread = np.einsum("am,amd,ame->ade", beta, nu, nu) - nu_bar[:, :, None] * nu_bar[:, None, :]
    x = table.x[slots] + np.einsum("aij,aj->ai", gain, nu_bar)
    p_c = p - gain @ s @ gain.transpose(0, 2, 1)
    p_new = beta0[:, None, None] * p + (1.0 - beta0)[:, None, None] * p_c
    p_new = p_new + gain @ spread @ gain.transpose(0, 2, 1)
    p_new = 0.5 * (p_new + p_new.transpose(0, 2, 1))
    table.x[slots] = x
    table.p[slots] = p_new
    table.xm[slots] = x[:, None, :]
    table.pm[slots] = p_new[:, None, :, :]
