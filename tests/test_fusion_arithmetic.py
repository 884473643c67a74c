"""The tracker's vectorised arithmetic against plain references: GNN over gated pairs (the
shortcut for lone pairs changes nothing), gating's Mahalanobis terms, the IMM prediction and update."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from cuas_node.fusion import imm
from cuas_node.fusion.association import assign
from cuas_node.fusion.models import (
    axis_noise,
    cv_matrix,
    mahalanobis_logdet,
    turn_matrix,
    white_accel_pattern,
    whiten,
)
from cuas_node.fusion.tracks import TrackTable


def _dense_optimum(k: int, m: int, ki: np.ndarray, mj: np.ndarray, cost: np.ndarray) -> tuple[int, float]:
    """What the whole (K, M) matrix solved at once gives: the number of gated pairs and their cost."""
    full = np.full((k, m), 1e9)
    full[ki, mj] = cost
    r, c = linear_sum_assignment(full)
    inside = full[r, c] < 1e9
    return int(inside.sum()), float(full[r, c][inside].sum())


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.floats(0.05, 0.6), st.integers(0, 2**31 - 1))
def test_the_same_optimum_as_the_whole_matrix(k: int, m: int, density: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ki, mj = np.nonzero(rng.random((k, m)) < density)
    cost = rng.normal(0.0, 10.0, ki.size)  # −2 log-likelihoods may be negative
    chosen = assign(ki, mj, cost, np.ones(ki.size, dtype=bool))
    assert np.unique(ki[chosen]).size == chosen.size  # one measurement per track
    assert np.unique(mj[chosen]).size == chosen.size  # one track per measurement
    count, total = _dense_optimum(k, m, ki, mj, cost)
    assert chosen.size == count
    assert np.isclose(cost[chosen].sum(), total)


def test_only_eligible_pairs_are_chosen() -> None:
    ki = np.array([0, 0, 1, 2])
    mj = np.array([0, 1, 1, 2])
    cost = np.array([1.0, 0.5, 0.2, 3.0])
    chosen = assign(ki, mj, cost, np.array([True, True, False, True]))
    assert sorted(zip(ki[chosen].tolist(), mj[chosen].tolist(), strict=True)) == [(0, 1), (2, 2)]
    everything = assign(ki, mj, cost, np.ones(4, dtype=bool))
    assert sorted(zip(ki[everything].tolist(), mj[everything].tolist(), strict=True)) == [
        (0, 0),
        (1, 1),
        (2, 2),
    ]
    assert assign(ki, mj, cost, np.zeros(4, dtype=bool)).size == 0


def test_mahalanobis_and_log_determinant_match_the_inverse_even_when_not_positive_definite() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(50, 4, 6))
    s = a @ a.transpose(0, 2, 1) + np.diag([4.0, 3e-4, 3e-4, 0.01])
    nu = rng.normal(size=(50, 4))
    d2, logdet = mahalanobis_logdet(nu, s)
    assert np.allclose(d2, np.einsum("pi,pij,pj->p", nu, np.linalg.inv(s), nu))
    assert np.allclose(logdet, np.linalg.slogdet(s)[1])
    s[7] = np.diag([1.0, 1.0, 1.0, -1e-9])  # rounding gone wrong in one pair: no exception
    d2, logdet = mahalanobis_logdet(nu, s)
    assert np.isfinite(d2).all() and np.isfinite(logdet).all()


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_whitening_is_the_inverse_cholesky_factor_of_every_matrix(dim: int) -> None:
    """`whiten` is the inverse Cholesky factor: W b = L⁻¹ b and ln|S| row by row (2 ln L_ii, each
    the log-determinant of the leading block over the one before) for many right-hand sides at
    once (the IMM update's H P and ν, by forward substitution), and NaN stays NaN without an error."""
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(40, dim, dim + 2))
    s = a @ a.transpose(0, 2, 1) + 1e-3 * np.eye(dim)
    b = rng.normal(size=(40, dim, 7))
    y, logdet = whiten(s, b)
    assert np.allclose(y, np.linalg.solve(np.linalg.cholesky(s), b), rtol=1e-10, atol=1e-12)
    leading = np.stack([np.linalg.slogdet(s[:, :i, :i])[1] for i in range(1, dim + 1)], axis=1)
    assert np.allclose(logdet, np.diff(leading, prepend=0.0, axis=1))
    s[3] = np.nan
    y, logdet = whiten(s, b)
    assert np.isnan(y[3]).all() and np.isnan(logdet[3]).all()
    assert np.isfinite(np.delete(y, 3, axis=0)).all()


def _reference_imm_prediction(
    mu: np.ndarray, xm: np.ndarray, pm: np.ndarray, dt: float, params: imm.ImmParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One track's IMM interaction and prediction written out model by model."""
    n = mu.size
    stay = np.exp(-params.switch_rate_hz * dt)
    pi = np.full((n, n), (1.0 - stay) / (n - 1))
    np.fill_diagonal(pi, stay)
    c = mu @ pi
    x_out, p_out = np.zeros((n, 6)), np.zeros((n, 6, 6))
    for j in range(n):
        f = turn_matrix(np.array([dt]), params.turns[j : j + 1])[0, 0]
        w = mu * pi[:, j] / c[j]
        x0 = sum(w[i] * xm[i] for i in range(n))
        # Horizontal velocity mixed in speed and heading (`tracks.keep_speed`): the mean speed
        # along the mean heading, unless the headings disagree (resultant under half the speed).
        mean_speed = sum(w[i] * math.hypot(xm[i][3], xm[i][4]) for i in range(n))
        resultant = math.hypot(x0[3], x0[4])
        if resultant >= 0.5 * mean_speed and resultant > 0.0:
            x0[3:5] *= mean_speed / resultant
        p0 = sum(w[i] * (pm[i] + np.outer(xm[i] - x0, xm[i] - x0)) for i in range(n))
        q = white_accel_pattern(np.array([dt]))[0] * axis_noise(
            params.accel_h_mps2[j], params.accel_v_mps2[j]
        )
        x_out[j], p_out[j] = f @ x0, f @ p0 @ f.T + q
    x = sum(c[j] * x_out[j] for j in range(n))
    p = sum(c[j] * (p_out[j] + np.outer(x_out[j] - x, x_out[j] - x)) for j in range(n))
    return c, x_out, p_out, x, p


@pytest.mark.parametrize("n_models", [2, 3])
@pytest.mark.parametrize("same_dt", [True, False])
@pytest.mark.parametrize("turning", [False, True])
def test_imm_prediction_matches_the_model_by_model_reference(
    n_models: int, same_dt: bool, turning: bool
) -> None:
    params = imm.ImmParams(
        accel_h_mps2=(0.7, 3.0, 6.0)[-n_models:],
        accel_v_mps2=(0.3, 1.0, 2.0)[-n_models:],
        initial_mode=tuple([1.0 / n_models] * n_models),
        turn_rate_rad_s=(0.0, 0.3, -0.2)[-n_models:] if turning else (),
    )
    rng = np.random.default_rng(n_models)
    table = TrackTable(16, n_models, params.initial_mode)
    slots = np.array([1, 4, 5, 9])
    mu = rng.dirichlet(np.ones(n_models), slots.size)
    xm = rng.normal(0.0, 20.0, (slots.size, n_models, 6))
    a = rng.normal(size=(slots.size, n_models, 6, 6))
    pm = a @ a.transpose(0, 1, 3, 2) + np.eye(6)
    table.mu[slots], table.xm[slots], table.pm[slots] = mu, xm, pm
    dt = np.full(slots.size, 0.05) if same_dt else np.array([0.05, 0.1, 0.0, 1.0])
    imm.mix_and_predict(table, slots, dt, params)
    for row, slot in enumerate(slots):
        c, x_models, p_models, x, p = _reference_imm_prediction(mu[row], xm[row], pm[row], dt[row], params)
        assert np.allclose(table.mu[slot], c)
        assert np.allclose(table.xm[slot], x_models)
        assert np.allclose(table.pm[slot], p_models)
        assert np.allclose(table.x[slot], x)
        assert np.allclose(table.p[slot], p)


def test_a_turn_model_carries_a_state_along_its_circle() -> None:
    """`turn_matrix` against the circle itself: a target at speed v turning at ω (counter-clockwise
    from above) is, t later, at the point of its circle ω t further round, its velocity turned by
    ω t, climbing as before; at ω = 0 it is the constant-velocity model."""
    v, omega, climb = 12.0, 0.25, 1.5
    radius = v / omega
    centre = np.array([100.0, -40.0])
    heading0 = 0.7  # the velocity's direction; the position is a quarter turn behind it
    pos0 = centre + radius * np.array([np.cos(heading0 - np.pi / 2), np.sin(heading0 - np.pi / 2)])
    x0 = np.array([*pos0, 30.0, v * np.cos(heading0), v * np.sin(heading0), climb])
    dts = np.array([0.05, 1.0, 4.0])
    f = turn_matrix(dts, np.array([omega, 0.0]))
    for k, t in enumerate(dts):
        heading = heading0 + omega * t
        pos = centre + radius * np.array([np.cos(heading - np.pi / 2), np.sin(heading - np.pi / 2)])
        expected = np.array([*pos, 30.0 + climb * t, v * np.cos(heading), v * np.sin(heading), climb])
        assert np.allclose(f[k, 0] @ x0, expected)
        assert np.allclose(f[k, 1], cv_matrix(np.array([t]))[0])


def test_whitening_a_batch_with_one_matrix_rounding_left_indefinite_keeps_every_row() -> None:
    """One covariance of a batch not positive definite (rounding): it is replaced by its nearest
    positive definite matrix and factorised like the rest, so every matrix's rows stay its rows
    (the IMM weighs a range-rate row apart) and the healthy ones' results do not move, however
    ill-conditioned (gating factorises every pair of a scan in one batch)."""
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 4, 6))
    s = a @ a.transpose(0, 2, 1) + 1e-3 * np.eye(4)
    s[4] = np.diag([1.0, 1.0, 1.0, 1e-12])  # positive definite, but past 1e9 in condition
    b = rng.normal(size=(6, 4, 1))
    healthy_y, healthy_logdet = whiten(s[:5], b[:5])
    s[5] = np.diag([1.0, 2.0, 3.0, -1e-9])  # indefinite by a rounding error
    y, logdet = whiten(s, b)
    assert np.array_equal(y[:5], healthy_y) and np.array_equal(logdet[:5], healthy_logdet)
    assert np.allclose(logdet[5, :3], np.log([1.0, 2.0, 3.0])) and np.isfinite(y[5]).all()


def _gaussian(nu: np.ndarray, s: np.ndarray) -> float:
    return float(np.exp(-0.5 * nu @ np.linalg.inv(s) @ nu) / np.sqrt(np.linalg.det(2 * np.pi * s)))


@pytest.mark.parametrize(("dim", "clutter"), [(3, False), (4, False), (3, True), (4, True)])
def test_imm_update_matches_the_model_by_model_kalman_update(dim: int, clutter: bool) -> None:
    """`imm.update` against each model's Kalman update written out with an explicit inverse, the
    measurement linearised at the combined estimate (h(x_j) ≈ h(x) + H (x_j − x), as the tracker
    does), and the mode probabilities re-weighed by each model's Gaussian likelihood: of the
    position rows, times that of the range-rate row given them raised to `RANGE_RATE_EVIDENCE`.
    With a density of "missed, and a false alarm" (IMM-PDA, Bar-Shalom): each model takes the
    plot with β_j = g_j / (g_j + m), its covariance P − β K S Kᵀ + β (1 − β) K ν νᵀ Kᵀ, and its
    weight by g_j + m (m the density over Pd; g_j the likelihood as the weights count it)."""
    params = imm.ImmParams(
        accel_h_mps2=(0.7, 3.0, 3.0), accel_v_mps2=(0.3, 1.0, 1.0), initial_mode=(1 / 3, 1 / 3, 1 / 3)
    )
    rng = np.random.default_rng(dim)
    table = TrackTable(16, 3, params.initial_mode)
    slots = np.array([2, 3, 7, 11, 12])
    mu = rng.dirichlet(np.ones(3), slots.size)
    xm = rng.normal(0.0, 5.0, (slots.size, 3, 6))
    a = rng.normal(size=(slots.size, 3, 6, 6))
    pm = a @ a.transpose(0, 1, 3, 2) + np.eye(6)
    table.mu[slots], table.xm[slots], table.pm[slots] = mu, xm, pm
    table.combine(slots)
    h = rng.normal(size=(slots.size, dim, 6))
    r = np.stack([np.diag(rng.uniform(0.5, 2.0, dim)) for _ in slots])
    nu = rng.normal(size=(slots.size, dim))
    extra = rng.uniform(0.0, 1.0, slots.size) if dim == 4 else None
    x_comb = table.x[slots].copy()
    # Densities of the order of the models' likelihoods, so that β spans (0, 1); one track with none.
    miss = rng.uniform(0.0, 0.05, slots.size) * np.r_[np.ones(slots.size - 1), 0.0] if clutter else None
    imm.update(table, slots, nu, h, r, extra, miss)
    betas = []
    for row, slot in enumerate(slots):
        r_row = r[row].copy()
        if extra is not None:
            r_row[3, 3] += extra[row]
        like = np.empty(3)
        for j in range(3):
            innovation = nu[row] - h[row] @ (xm[row, j] - x_comb[row])
            s = h[row] @ pm[row, j] @ h[row].T + r_row
            gain = pm[row, j] @ h[row].T @ np.linalg.inv(s)
            like[j] = _gaussian(innovation, s)
            if dim == 4:  # the range-rate row's evidence, given the position rows, counts a fraction
                given = like[j] / _gaussian(innovation[:3], s[:3, :3])
                like[j] = _gaussian(innovation[:3], s[:3, :3]) * given**imm.RANGE_RATE_EVIDENCE
            if dim == 4:  # the row's missing 1 − κ of a density: the radar's own there
                like[j] *= (2 * np.pi * r_row[3, 3]) ** (-(1.0 - imm.RANGE_RATE_EVIDENCE) / 2.0)
            beta = 1.0 if miss is None else like[j] / (like[j] + miss[row])
            betas.append(beta)
            step = gain @ innovation
            assert np.allclose(table.xm[slot, j], xm[row, j] + beta * step)
            spread = beta * (1.0 - beta) * np.outer(step, step)
            assert np.allclose(table.pm[slot, j], pm[row, j] - beta * gain @ s @ gain.T + spread)
            if miss is not None:
                like[j] += miss[row]
        assert np.allclose(table.mu[slot], mu[row] * like / (mu[row] * like).sum())
    if clutter:  # the cases asked for: models that take the plot in part, and one that takes it whole
        assert min(betas) < 0.5 and max(betas) == 1.0


def test_the_imm_pda_update_does_not_depend_on_the_unit_of_speed() -> None:
    """The same 4-D plots with the range-rate in m/s and in km/h (its row, Jacobian, noise and
    second-order variance scaled, the false-alarm density per unit of speed divided): the same
    states and model weights. (β had weighed a tempered density in (m/s)^-1/3 against λ per m/s.)"""
    params = imm.ImmParams(
        accel_h_mps2=(0.7, 3.0, 3.0), accel_v_mps2=(0.3, 1.0, 1.0), initial_mode=(1 / 3, 1 / 3, 1 / 3)
    )
    rng = np.random.default_rng(11)
    slots = np.array([0, 1, 2, 3])
    mu = rng.dirichlet(np.ones(3), slots.size)
    xm = rng.normal(0.0, 5.0, (slots.size, 3, 6))
    a = rng.normal(size=(slots.size, 3, 6, 6))
    pm = a @ a.transpose(0, 1, 3, 2) + np.eye(6)
    h = rng.normal(size=(slots.size, 4, 6))
    r = np.stack([np.diag(rng.uniform(0.5, 2.0, 4)) for _ in slots])
    nu = rng.normal(size=(slots.size, 4)) * 3.0
    extra = rng.uniform(0.0, 1.0, slots.size)
    miss = rng.uniform(0.0, 0.05, slots.size)
    scale = np.diag([1.0, 1.0, 1.0, 3.6])
    results = []
    for k in (np.eye(4), scale):
        table = TrackTable(8, 3, params.initial_mode)
        table.mu[slots], table.xm[slots], table.pm[slots] = mu, xm, pm
        table.combine(slots)
        imm.update(table, slots, nu @ k, k @ h, k @ r @ k, extra * k[3, 3] ** 2, miss / k[3, 3])
        results.append((table.xm[slots].copy(), table.mu[slots].copy()))
    assert np.allclose(results[0][0], results[1][0]) and np.allclose(results[0][1], results[1][1])


def test_the_imm_likelihood_of_a_plot_is_its_models_mixture() -> None:
    """`imm.mixture_cost` against Σ_j μ_j N(ν_j; 0, S_j) written out (ν_j = ν − H (x_j − x)), as
    −2 ln of it less D ln 2π; and where one model holds all the weight, the matched Gaussian's
    d² + ln|S|. A plot where the quiet model waits outranks one nearer the models' mean."""
    rng = np.random.default_rng(9)
    table = TrackTable(8, 3, (1 / 3, 1 / 3, 1 / 3))
    slots = np.array([1, 4, 5])
    table.mu[slots] = rng.dirichlet(np.ones(3), slots.size)
    table.xm[slots] = rng.normal(0.0, 3.0, (slots.size, 3, 6))
    a = rng.normal(size=(slots.size, 3, 6, 6))
    table.pm[slots] = a @ a.transpose(0, 1, 3, 2) + np.eye(6)
    table.combine(slots)
    h = rng.normal(size=(slots.size, 3, 6))
    r = np.stack([np.diag(rng.uniform(0.5, 2.0, 3)) for _ in slots])
    nu = rng.normal(size=(slots.size, 3))
    cost, _ = imm.mixture_cost(table, slots, nu, h, r)
    for row, slot in enumerate(slots):
        total = 0.0
        for j in range(3):
            innovation = nu[row] - h[row] @ (table.xm[slot, j] - table.x[slot])
            total += table.mu[slot, j] * _gaussian(innovation, h[row] @ table.pm[slot, j] @ h[row].T + r[row])
        assert np.isclose(cost[row], -2.0 * np.log(total) - 3 * np.log(2 * np.pi))
    # A quiet model at the origin (weight 0.3) and a lively one 3 m aside (0.7): the plot at the
    # quiet model is the likelier, though the matched Gaussian's mean lies nearer the other plot.
    table.mu[0] = (0.3, 0.7, 0.0)
    table.xm[0] = 0.0
    table.xm[0, 1, 0] = 3.0
    table.pm[0] = np.eye(6)
    table.pm[0, 0] *= 0.05
    table.pm[0, 1] *= 2.0
    table.combine(np.array([0]))
    h0 = np.zeros((2, 3, 6))
    h0[:, :, :3] = np.eye(3)
    at_quiet, beside = np.array([0.0, 0.0, 0.0]), np.array([2.0, 0.0, 0.0])
    nus = np.stack([at_quiet, beside]) - table.x[0, :3]
    cost, _ = imm.mixture_cost(table, np.array([0, 0]), nus, h0, np.stack([0.01 * np.eye(3)] * 2))
    assert cost[0] < cost[1]
    assert abs(nus[1, 0]) < abs(nus[0, 0])
