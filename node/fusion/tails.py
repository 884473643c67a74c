"""The Poisson count beyond which a count is unlikely, from `scipy.special` alone.

`scipy.stats` answers this (`poisson.isf`), but importing it costs about 0.7 s of CPU (three
seconds on a Raspberry Pi 4) in every process that fuses or calibrates: the node's start, each
`track`, `replay` and `calibrate` run. `scipy.special`, which fusion imports anyway, has the
Poisson tail itself (`pdtrc`); the quantile is the smallest count whose tail is small enough,
found by bisection over the integers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import pdtrc

FloatArray = npt.NDArray[np.float64]


def poisson_isf(q: float | FloatArray, mu: float | FloatArray) -> FloatArray:
    """The smallest count k ≥ 0 with P(X > k) ≤ q for X Poisson of mean mu (element-wise, as
    `scipy.stats.poisson.isf` defines it), q in (0, 1), mu ≥ 0. Exact where `pdtrc` is: for a
    tiny q (a family of many cells) it does not pass through 1 − q as the generic quantile does."""
    q_arr, mu_arr = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(mu, dtype=np.float64))
    if np.any((q_arr <= 0.0) | (q_arr >= 1.0)) or np.any(mu_arr < 0.0):
        raise ValueError("poisson_isf needs 0 < q < 1 and mu >= 0")
    low = np.full(q_arr.shape, -1.0)  # P(X > −1) = 1 > q: never the answer
    high = np.ceil(mu_arr + 10.0 * np.sqrt(mu_arr) + 10.0)
    while np.any(short := pdtrc(high, mu_arr) > q_arr):  # rare: a q far below e^-10 or so
        high = np.where(short, 2.0 * high, high)
    while np.any(high - low > 1.0):  # the tail only falls with k: halve [low, high] where apart
        middle = np.floor(0.5 * (low + high))
        enough = pdtrc(middle, mu_arr) <= q_arr
        high, low = np.where(enough, middle, high), np.where(enough, low, middle)
    return np.asarray(high, dtype=np.float64)
