"""A site's fixed reflectors, learnt once with nothing flying: where one radar's plots recur.

A mast, a roof edge or a tree in the wind gives a plot in some scans and not in others, at one
place. To the track score such a spot is a target of low detection probability: its hits beat the
uniform clutter density by the whole likelihood of a point, and its tracks confirm (the
benchmark's `--reflectors`: 20-60 false confirmed tracks in 30 s). Nothing a track does on its own
tells a reflector from a drone hovering there, so the evidence comes from the site itself, recorded
at installation (`cuas-node calibrate radar-reflectors`, docs/calibration.md): each recurring spot
becomes a Gaussian of the plots it gave, with their rate per scan. Fusion then prices a plot
against the clutter density λ(z) = λ_uniform + Σ_k rate_k · N(z; μ_k, Σ_k) instead of the uniform
one alone: a plot on a reflector is as well explained by the reflector as by any track sitting
there, so it adds nothing to that track's score, while a plot a few of the radar's sigmas away is
priced as before. A drone is blind to the radar only inside a reflector's own scatter, where no
rule could tell the two apart; it confirms once it leaves it (or by another sensor).

Pure numpy: learnt from arrays (`learn_reflectors`), stored as a plain dict (`to_dict`), read by
the composition root from the file the calibration writes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import poisson

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

FORMAT = "cuas-node radar-reflectors 1"
_CELL_SIGMAS = 2.0  # a counting cell is this many of the sensor's sigmas wide in each position row
_FAMILY_FALSE_SPOTS = 1e-3  # chance that uniform clutter alone makes any spot anywhere
_MIN_PLOTS = 3  # fewer plots at one place are no recurrence
_GATHER_SIGMAS = 4.0  # a spot's plots: within this many sigmas (each row) of its centre
_RIDGE = 0.01  # of the sensor's variance, added to a spot's scatter (a spot of identical plots)
_REACH_SIGMAS = 8.0  # in range: a reflector further from a plot adds nothing to its density
BURST_SCANS = 20  # a spot's rate is its busiest run of this many scans' (`learn_reflectors`)


class SiteReflectors:
    """The fixed reflectors one radar sees, in its own measurement space (range m, azimuth rad,
    elevation rad[, range-rate m/s]). `mean` (K, D), `cov` (K, D, D), `rate` (K,) plots per scan.
    A scan of fewer rows than the map (a 3-D detection against a 4-D map) uses the marginal."""

    def __init__(self, mean: FloatArray, cov: FloatArray, rate: FloatArray) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.cov = np.asarray(cov, dtype=np.float64)
        self.rate = np.asarray(rate, dtype=np.float64)
        k = self.rate.size
        if self.mean.ndim != 2 or self.mean.shape[0] != k or self.dim not in (3, 4):
            raise ValueError("every reflector's 'mean' has 3 or 4 rows, the same for all")
        if self.cov.shape != (k, self.dim, self.dim):
            raise ValueError("every reflector's 'cov' is D × D, D the rows of its 'mean'")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.cov))):
            raise ValueError("a reflector's 'mean' and 'cov' are finite numbers")
        if not np.all(np.isfinite(self.rate) & (self.rate >= 0.0)):
            raise ValueError("a reflector's 'rate_per_scan' is a finite number >= 0")
        self._by_dim: dict[int, tuple[FloatArray, FloatArray]] = {}
        for d in (3, self.dim):
            c = self.cov[:, :d, :d]
            sign, logdet = np.linalg.slogdet(2.0 * math.pi * c)
            if np.any(sign <= 0):
                raise ValueError("a reflector's covariance is not positive definite")
            inv = np.asarray(np.linalg.inv(c), dtype=np.float64)
            self._by_dim[d] = (inv, np.log(np.maximum(self.rate, 1e-300)) - 0.5 * logdet)
        self._order = np.argsort(self.mean[:, 0], kind="stable")
        self._ranges = self.mean[self._order, 0]
        self._reach = _REACH_SIGMAS * float(np.sqrt(self.cov[:, 0, 0].max())) if k else 0.0

    @property
    def dim(self) -> int:
        return int(self.mean.shape[1])

    def __len__(self) -> int:
        return int(self.rate.size)

    def density(self, z: FloatArray) -> FloatArray:
        """The reflectors' plot density at each measurement (M, D): what they add to λ there.
        Only the pairs within `_REACH_SIGMAS` in range are evaluated (found by bisection on the
        reflectors sorted by range): a scan of 100 plots against 200 reflectors took 1.2 ms as a
        full (M, K) product, and a reflector further off adds under e^-32 of its peak."""
        m = z.shape[0]
        if not len(self) or m == 0:
            return np.zeros(m)
        lo = np.searchsorted(self._ranges, z[:, 0] - self._reach, "left")
        counts = np.searchsorted(self._ranges, z[:, 0] + self._reach, "right") - lo
        if not counts.any():
            return np.zeros(m)
        plot = np.repeat(np.arange(m), counts)
        first = np.repeat(lo - np.cumsum(counts) + counts, counts)  # pair p → sorted position p + first
        k = self._order[np.arange(plot.size) + first]
        d = min(z.shape[1], self.dim)
        inv, log_scale = self._by_dim[d]
        nu = z[plot, :d] - self.mean[k, :d]
        nu[:, 1] = (nu[:, 1] + math.pi) % (2.0 * math.pi) - math.pi
        d2 = np.einsum("pi,pij,pj->p", nu, inv[k], nu)
        return np.bincount(plot, weights=np.exp(log_scale[k] - 0.5 * d2), minlength=m).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dim": self.dim,
            "reflectors": [
                {"mean": m.tolist(), "cov": c.tolist(), "rate_per_scan": float(r)}
                for m, c, r in zip(self.mean, self.cov, self.rate, strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> SiteReflectors:
        """From `to_dict`'s form; ValueError naming what is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a reflector map (its 'format' must be {FORMAT!r})")
        spots = data.get("reflectors")
        if not isinstance(spots, list):
            raise ValueError("'reflectors' must be a list")
        try:
            mean = np.array([s["mean"] for s in spots], dtype=np.float64)
            cov = np.array([s["cov"] for s in spots], dtype=np.float64)
            rate = np.array([s["rate_per_scan"] for s in spots], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a reflector needs 'mean', 'cov' and 'rate_per_scan': {exc}") from None
        dim = int(data.get("dim", 3))
        if not spots:
            return cls(np.zeros((0, dim)), np.zeros((0, dim, dim)), np.zeros(0))
        return cls(mean, cov, rate)


def learn_reflectors(
    z: FloatArray, scan_of: IndexArray, n_scans: int, sigma: FloatArray, view: tuple[float, float, float]
) -> SiteReflectors:
    """The spots where plots recur more than the clutter around them explains, from every plot
    `z` (N, D) of `n_scans` scans of a site with no target in it (`scan_of` (N,): the scan of
    each, from 0). `sigma` (D,) is the sensor's specified accuracy per row and `view` its
    coverage (range span m, azimuth and elevation half-widths rad).

    The counting cells are `_CELL_SIGMAS` sigmas wide in range, azimuth and elevation. A cell's
    3×3×3 neighbourhood is a spot when it holds more plots than its three range rings' other
    cells explain, beyond chance `_FAMILY_FALSE_SPOTS` over all the coverage's cells: clutter
    that varies with range (denser near the radar, or only far) is the rings' background and makes
    no spot, as in `clutter.ClutterMap`; where a ring has too few cells to judge by (a narrow
    view) the background is the whole recording spread evenly over the coverage. Greedy,
    strongest first: each spot takes its plots (within `_GATHER_SIGMAS`, re-centred), so one
    reflector is one spot however its plots fall on the cells.

    A spot's rate is that of its busiest `BURST_SCANS` scans, not its mean: a reflector that
    shows in bursts (a flag, a door) is priced as it is while it shows, when it could confirm a
    track; a rate too high blinds nothing but the spot's own scatter."""
    z = np.asarray(z, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    dim = z.shape[1] if z.ndim == 2 else 3
    empty = SiteReflectors(np.zeros((0, dim)), np.zeros((0, dim, dim)), np.zeros(0))
    if z.ndim != 2 or z.shape[0] < _MIN_PLOTS or n_scans <= 0:
        return empty
    cell = _CELL_SIGMAS * sigma[:3]
    span_m, fov_az, fov_el = view
    ring_cells = max(2.0 * fov_az / cell[1], 1.0) * max(2.0 * fov_el / cell[2], 1.0)
    n_cells = ring_cells * max(span_m / cell[0], 1.0)
    keys = np.floor(z[:, :3] / cell).astype(np.int64)
    cells, where, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    where = where.ravel()
    around = _neighbourhood_counts(cells, counts)
    if 3.0 * ring_cells - 27.0 >= 27.0:  # each cell against its rings' other cells
        rows, per_row = np.unique(keys[:, 0], return_counts=True)
        ring = dict(zip(rows.tolist(), per_row.tolist(), strict=True))
        rings = np.array([sum(ring.get(i + d, 0) for d in (-1, 0, 1)) for i in cells[:, 0].tolist()])
        expected = 27.0 * np.maximum(rings - around, 0.0) / (3.0 * ring_cells - 27.0)
    else:
        expected = np.full(cells.shape[0], 27.0 * z.shape[0] / n_cells)
    bar = np.maximum(poisson.isf(_FAMILY_FALSE_SPOTS / n_cells, expected) + 1.0, _MIN_PLOTS)
    taken = np.zeros(z.shape[0], dtype=bool)
    means: list[FloatArray] = []
    covs: list[FloatArray] = []
    rates: list[float] = []
    for c in np.flatnonzero(around >= bar)[np.argsort(-around[around >= bar], kind="stable")]:
        seed = ~taken & (where == c)
        if not seed.any():
            continue
        centre = z[seed].mean(axis=0)
        for _ in range(3):
            near = ~taken & np.all(np.abs(_wrapped(z - centre)) <= _GATHER_SIGMAS * sigma, axis=1)
            if not near.any():
                break
            centre = centre + _wrapped(z[near] - centre).mean(axis=0)
        if near.sum() < bar[c]:
            continue
        taken |= near
        nu = _wrapped(z[near] - centre)
        ridge = np.diag(_RIDGE * sigma**2)
        cov = nu.T @ nu / near.sum() + ridge if near.sum() > 3 * dim else np.diag(sigma**2)
        means.append(centre)
        covs.append(cov)
        rates.append(_busiest_rate(scan_of[near], n_scans))
    if not rates:
        return empty
    return SiteReflectors(np.array(means), np.array(covs), np.array(rates))


def _busiest_rate(scans: IndexArray, n_scans: int) -> float:
    """Plots per scan in the busiest `BURST_SCANS` consecutive scans (the mean over all, if fewer)."""
    per_scan = np.bincount(scans, minlength=n_scans).astype(np.float64)
    if n_scans <= BURST_SCANS:
        return float(per_scan.sum()) / max(n_scans, 1)
    total = np.concatenate([[0.0], np.cumsum(per_scan)])
    return float((total[BURST_SCANS:] - total[:-BURST_SCANS]).max()) / BURST_SCANS


def _wrapped(nu: FloatArray) -> FloatArray:
    """Differences of measurements with the azimuth row wrapped into [-π, π)."""
    out = np.array(nu, dtype=np.float64)
    out[..., 1] = (out[..., 1] + math.pi) % (2.0 * math.pi) - math.pi
    return out


def _neighbourhood_counts(cells: npt.NDArray[np.int64], counts: npt.NDArray[np.intp]) -> FloatArray:
    """Each occupied cell's plots plus its 26 neighbours'."""
    lookup = {tuple(c): int(n) for c, n in zip(cells.tolist(), counts.tolist(), strict=True)}
    steps = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]
    return np.array(
        [sum(lookup.get((i + a, j + b, k + c), 0) for a, b, c in steps) for i, j, k in cells.tolist()],
        dtype=np.float64,
    )
