"""`fusion.tails.poisson_isf`: the Poisson quantile fusion and calibration use in place of
`scipy.stats.poisson.isf` (whose import costs every fusing process ~0.7 s of CPU)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.special import pdtrc
from scipy.stats import poisson

from cuas_node.fusion.tails import poisson_isf


@pytest.mark.parametrize("q", [0.5, 0.1, 1e-2, 1e-4, 1e-6, 1e-9])
def test_it_is_scipy_stats_poisson_isf(q: float) -> None:
    rng = np.random.default_rng(7)
    mu = np.concatenate(
        [[0.0, 1e-9, 1e-3, 0.5, 1.0, 50.0, 1e5], rng.uniform(0, 200, 500), 10 ** rng.uniform(-6, 4, 500)]
    )
    assert np.array_equal(poisson_isf(q, mu), poisson.isf(q, mu))
    assert poisson_isf(q, 3.0).shape == () and float(poisson_isf(q, 3.0)) == poisson.isf(q, 3.0)


def test_it_is_the_smallest_count_whose_tail_is_small_enough_even_far_out() -> None:
    """Where 1 − q rounds (q below 1e-16) the generic quantile cannot see q; this one can."""
    mu = np.array([0.01, 2.0, 40.0, 900.0])
    for q in (1e-12, 1e-20, 1e-40):
        k = poisson_isf(q, mu)
        assert np.all(pdtrc(k, mu) <= q) and np.all(pdtrc(k - 1.0, mu) > q)


def test_bad_arguments_are_refused() -> None:
    for q, mu in (
        (0.0, 1.0),
        (1.0, 1.0),
        (0.1, -1.0),
        (np.nan, 1.0),
        (0.1, np.nan),
        (0.1, np.inf),
        (0.1, 1e16),
    ):
        with pytest.raises(ValueError, match="0 < q < 1"):
            poisson_isf(q, mu)
    k = float(poisson_isf(1e-6, 1e12))  # the largest mean taken (scipy.stats: NaN)
    assert pdtrc(k, 1e12) <= 1e-6 < pdtrc(k - 1.0, 1e12)


def test_nothing_that_fuses_or_calibrates_imports_scipy_stats() -> None:
    """The node's start, `track`, `replay` and the CLI's parser: none pays for scipy.stats."""
    code = (
        "import sys, cuas_node.runtime, cuas_node.replay, cuas_node.cli, cuas_node.calibration.cli,"
        " cuas_node.calibration.reflector_learning;"
        "print('scipy.stats' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
