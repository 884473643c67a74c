"""Joint probabilistic data association, cheaply: the soft update of established tracks that
compete for the same detections, where a hard nearest-neighbour choice would be a guess (two
drones a few metres apart, a split cluster). The tracker's gating supplies the likelihoods."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cuas_node.fusion import imm
from cuas_node.fusion.gating import Gating
from cuas_node.fusion.models import STATE_DIM
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
    p_d: float,
    clutter: float | FloatArray,
) -> None:
    """Cheap JPDA (Fitzgerald): β_ij = G_ij / (T_i + M_j − G_ij + B), with G the detection-
    weighted likelihoods (the IMM mixture's, as gating priced them), T_i and M_j their track and
    measurement sums and B the clutter density (the sensor's, `sensor_stats`; per measurement
    where the site has reflectors); then an IMM-PDA update of each model of the contested tracks
    (`rows` of the gating's (K, M) arrays, `active` their slots).

    The models are kept, not collapsed to the result: each weighs the plots by how well it, not
    the mixture, predicted them, P(plot | model) = β_i · g_j(plot) / ḡ(plot) / c_j, with
    c_j = β_0 + Σ_plots β_i · g_j / ḡ the evidence for the model (its new weight is μ_j · c_j;
    ḡ = Σ_j μ_j g_j, the models' likelihoods `imm.model_gains`'). Collapsed, a pair of drones a
    few metres apart at 1 Hz lost the quiet model's tight prediction at every shared scan: the
    weights drifted to uniform, the lively models' wide gates took more of the other drone's
    plots, and one track was led off for 35 scans (tests/test_tracker_generalisation.py)."""
    gated, k = g.gated, g.gated.shape[0]
    like = np.where(gated, p_d * np.exp(g.dense(g.loglik, -np.inf)), 0.0)  # (K,M)
    t_sum = like.sum(axis=1, keepdims=True)
    m_sum = like.sum(axis=0, keepdims=True)
    beta = like / np.maximum(t_sum + m_sum - like + clutter, 1e-300)
    beta0 = np.clip(1.0 - beta[rows].sum(axis=1), 0.0, 1.0)  # (A,) no plot is the target's
    position = np.full(k, -1, dtype=np.intp)
    position[rows] = np.arange(rows.size)
    pairs = np.flatnonzero(position[g.ki] >= 0)
    ki, mj = g.ki[pairs], g.mj[pairs]
    track = position[ki]  # (P,) each pair's contested track, 0..A-1
    slots = active[ki]
    extra = None if g.rate_extra is None else g.rate_extra[ki]
    dx, taken, loglik = imm.model_gains(
        table, slots, g.nu[pairs], g.h[ki], g.r[pairs], extra, g.terms_of(pairs)
    )
    # g_j / ḡ for each pair and model, then c_j and P(plot | model).
    log_mu = np.log(np.maximum(table.mu[slots], 1e-12))
    ratio = np.exp(loglik - np.logaddexp.reduce(log_mu + loglik, axis=1, keepdims=True))  # (P,R)
    share = beta[ki, mj][:, None] * ratio
    evidence = np.repeat(beta0[:, None], ratio.shape[1], axis=1)
    np.add.at(evidence, track, share)
    weight = share / np.maximum(evidence[track], 1e-300)  # (P,R)
    # The moments of each model's mixture over "plot i is the target's" and "none is".
    n_models = table.mu.shape[1]
    moved = np.zeros((rows.size, n_models, STATE_DIM))
    np.add.at(moved, track, weight[..., None] * dx)
    lost = np.zeros((rows.size, n_models, STATE_DIM, STATE_DIM))
    np.add.at(lost, track, weight[..., None, None] * (taken - dx[..., :, None] * dx[..., None, :]))
    lost += moved[..., :, None] * moved[..., None, :]
    slots = active[rows]
    mu = table.mu[slots] * evidence
    mu /= np.maximum(mu.sum(axis=1, keepdims=True), 1e-300)
    table.store_models(slots, mu, table.xm[slots] + moved, table.pm[slots] - lost)
