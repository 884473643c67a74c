"""The Poisson count beyond which a count is unlikely, from `scipy.special` alone.

`scipy.stats` answers this (`poisson.isf`), but importing it costs about 0.7 s of CPU (three
seconds on a Raspberry Pi 4) in every process that fuses or learns reflectors: the node's start,
each `track`, `replay` and `calibrate` run. (An acoustic array sampling above 16 kHz still
imports it, through `scipy.signal`'s resampler, when its first block comes: in its own thread,
once.) `scipy.special`, which fusion imports anyway, has the
Poisson tail itself (`pdtrc`); the quantile is the smallest count whose tail is small enough,
found by bisection over the integers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import pdtrc

FloatArray = npt.NDArray[np.float64]

MAX_MEAN = 1e12
"""The largest mean taken: counts stay exact integers in float64 far beyond the answer (above
2⁵³ the bisection could not split an interval). Fusion's means are plots per cell, a few."""


def poisson_isf(q: float | FloatArray, mu: float | FloatArray) -> FloatArray:
    """The smallest count k ≥ 0 with P(X > k) ≤ q for X Poisson of mean mu (element-wise, as
    `scipy.stats.poisson.isf` defines it; an array, 0-d for scalars), q in (0, 1), 0 ≤ mu ≤
    `MAX_MEAN`. Exact where `pdtrc` is: for a tiny q (a family of many cells) it does not pass
    through 1 − q as the generic quantile does. Arguments outside those ranges (NaN among them)
    are refused, where scipy.stats returns NaN."""
    q_arr, mu_arr = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(mu, dtype=np.float64))
    if not (np.all((q_arr > 0.0) & (q_arr < 1.0)) and np.all((mu_arr >= 0.0) & (mu_arr <= MAX_MEAN))):
        raise ValueError(f"poisson_isf needs 0 < q < 1 and 0 <= mu <= {MAX_MEAN:g}")
    low = np.full(q_arr.shape, -1.0)  # P(X > −1) = 1 > q: never the answer
    high = np.ceil(mu_arr + 10.0 * np.sqrt(mu_arr) + 10.0)
    while np.any(short := pdtrc(high, mu_arr) > q_arr):  # rare: a q far below e^-10 or so
        high = np.where(short, 2.0 * high, high)
    while np.any(high - low > 1.0):  # the tail only falls with k: halve [low, high] where apart
        middle = np.floor(0.5 * (low + high))
        enough = pdtrc(middle, mu_arr) <= q_arr
        high, low = np.where(enough, middle, high), np.where(enough, low, middle)
    return np.asarray(high, dtype=np.float64)
