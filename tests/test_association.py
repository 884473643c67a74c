"""GNN assignment over gated pairs (the shortcut for lone pairs changes nothing) and the gating arithmetic."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from cuas_node.fusion.association import assign
from cuas_node.fusion.models import mahalanobis_logdet


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
