"""Where one radar's plots recur at a site with nothing flying: the reflector map's learning.

Pure numpy on arrays (sans-IO): every plot of a survey (range, azimuth, elevation[, range-rate]
in the radar's frame), the scan each came in, and the radar's specified accuracy and coverage.
Nothing here is a constant of one radar or one site: the counting cells are the radar's sigmas,
the significance is a chance over its coverage's cells, the background is the site's own clutter
at each range. `calibration.radar_reflectors` feeds it from measurement lines; fusion uses what
it returns (`fusion.reflectors.SiteReflectors`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.stats import binom, poisson

from cuas_node.fusion.reflectors import SiteReflectors

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

CELL_SIGMAS = 2.0  # a counting cell is this many of the radar's sigmas wide in each position row
FAMILY_FALSE_SPOTS = 1e-3  # the chance that clutter alone makes a spot anywhere in the coverage
MIN_PLOTS = 3  # fewer plots at one place are no recurrence
GATHER_SIGMAS = 4.0  # a spot's plots: within this many sigmas (each row) of its centre
RIDGE = 0.01  # of the radar's variance, added to a spot's scatter (a spot of identical plots)
BURST_SCANS = 20  # a bursty spot's rate is its busiest run of this many scans'
STEADY_CHANCE = 1e-3  # below this chance of its busiest run at its mean rate, a spot is bursty
PARTS = 10  # a survey's tenths, over which a spot's plots are counted to tell passing from site
PASSING_PARTS = 2  # a spot whose plots beyond its usual tenth's come within this many tenths
PASSING_SHARE = 0.8  # (this share of them), its usual tenth under BACKGROUND_SHARE of its busiest,
BACKGROUND_SHARE = 0.2  # saw something pass through (a car, a walker), not the site
MIN_BACKGROUND_CELLS = 54  # the least cells a spot's background is judged over (two neighbourhoods)


@dataclass
class Survey:
    """What a survey holds: the site's reflectors, and the spots it saw only for a moment (what
    passed through: a car, a walker, a bird), as (K, D) means, left out of the map."""

    reflectors: SiteReflectors
    passing: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))


def learn_reflectors(
    z: FloatArray, scan_of: IndexArray, n_scans: int, sigma: FloatArray, view: tuple[float, float, float]
) -> Survey:
    """The spots where plots recur beyond the clutter around them, from every plot `z` (N, D) of
    `n_scans` scans of a site (`scan_of` (N,): the scan of each, 0..n_scans-1 in time order, gaps
    of the recording left out). `sigma` (D,): the radar's specified accuracy per row; `view`:
    its coverage (range span m, azimuth and elevation half-widths rad).

    - A cell's 3×3×3 neighbourhood is a spot when it holds more plots than the cells around it
      at the same ranges explain (`_backgrounds`), beyond chance `FAMILY_FALSE_SPOTS` over all
      the coverage's cells. Greedy, strongest first: each spot takes its plots (within
      `GATHER_SIGMAS`, re-centred), so one reflector is one spot however its plots fall.
    - A spot whose plots came in a moment of the survey saw something pass through the
      coverage (a car on a road, someone walking: each place it passed holds it for a moment;
      `_passing`); those spots are returned as `passing`, not learnt. A tree line or a fence
      that gives plots all along is the site's, and learnt, as is a reflector that shows in
      bursts over the survey.
    - A spot's rate is its mean over the survey, unless its busiest `BURST_SCANS` scans are
      beyond what that mean makes likely (`STEADY_CHANCE` over the survey): a reflector that
      shows in bursts (a door, a flag in gusts) is then priced as it is while it shows."""
    z = np.asarray(z, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    dim = z.shape[1] if z.ndim == 2 else 3
    empty = Survey(SiteReflectors(np.zeros((0, dim)), np.zeros((0, dim, dim)), np.zeros(0)))
    if z.ndim != 2 or z.shape[0] < MIN_PLOTS or n_scans <= 0:
        return empty
    cell = CELL_SIGMAS * sigma[:3]
    span_m, fov_az, fov_el = view
    ring_cells = max(2.0 * fov_az / cell[1], 1.0) * max(2.0 * fov_el / cell[2], 1.0)
    n_cells = ring_cells * max(span_m / cell[0], 1.0)
    keys = np.floor(z[:, :3] / cell).astype(np.int64)
    cells, where, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    where = where.ravel()
    around = _neighbourhood_counts(cells, counts)
    expected = _backgrounds(keys[:, 0], cells[:, 0], around, ring_cells)
    bar = np.maximum(poisson.isf(FAMILY_FALSE_SPOTS / n_cells, expected) + 1.0, MIN_PLOTS)
    taken = np.zeros(z.shape[0], dtype=bool)
    kept: list[tuple[FloatArray, FloatArray, float]] = []
    passing: list[FloatArray] = []
    for c in np.flatnonzero(around >= bar)[np.argsort(-around[around >= bar], kind="stable")]:
        seed = ~taken & (where == c)
        if not seed.any():
            continue
        centre = z[seed].mean(axis=0)
        near = seed
        for _ in range(3):
            near = ~taken & np.all(np.abs(_wrapped(z - centre)) <= GATHER_SIGMAS * sigma, axis=1)
            if not near.any():
                break
            centre = centre + _wrapped(z[near] - centre).mean(axis=0)
        if near.sum() < bar[c]:
            continue
        taken |= near
        if _passing(scan_of[near], n_scans):
            passing.append(centre)
            continue
        nu = _wrapped(z[near] - centre)
        n = int(near.sum())
        cov = nu.T @ nu / n + np.diag(RIDGE * sigma**2) if n > 3 * dim else np.diag(sigma**2)
        kept.append((centre, cov, _rate(scan_of[near], n_scans)))
    reflectors = empty.reflectors
    if kept:
        reflectors = SiteReflectors(
            np.array([k[0] for k in kept]), np.array([k[1] for k in kept]), np.array([k[2] for k in kept])
        )
    return Survey(reflectors, np.array(passing).reshape(-1, dim))


def _backgrounds(
    plot_rows: IndexArray, cell_rows: IndexArray, around: FloatArray, ring_cells: float
) -> FloatArray:
    """What each cell's neighbourhood would hold if its clutter were spread evenly over the cells
    at its ranges: the plots of the range rows within ±w of it, less its own neighbourhood's,
    over the rest of their cells. w is 1 (its own three rows) where the view is wide; a narrow
    view, with few cells a row, pools more rows until `MIN_BACKGROUND_CELLS` are left to judge by
    (clutter that varies with range is then averaged over a wider band, never over the whole
    coverage: 60 % of it in the nearest fifth of a ±3° view made 30 false spots that way)."""
    w = 1
    while (2 * w + 1) * ring_cells - 27.0 < MIN_BACKGROUND_CELLS:
        w += 1
    lo = int(plot_rows.min()) - w
    per_row = np.bincount(plot_rows - lo, minlength=int(plot_rows.max()) - lo + w + 1).astype(np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(per_row)])
    i = cell_rows - lo
    band = cumulative[np.minimum(i + w + 1, per_row.size)] - cumulative[np.maximum(i - w, 0)]
    return np.asarray(
        27.0 * np.maximum(band - around, 0.0) / ((2 * w + 1) * ring_cells - 27.0), dtype=np.float64
    )


def _passing(scans: IndexArray, n_scans: int) -> bool:
    """Whether a spot's plots came in a moment of the survey. Counted per tenth: its median tenth
    is the clutter that falls in its box at any time, under `BACKGROUND_SHARE` of its busiest
    tenth; and of the plots beyond that, `PASSING_SHARE` came within `PASSING_PARTS` tenths
    running. A steady reflector's tenths are alike; a bursty one's excess is spread over its
    bursts."""
    counts = np.bincount(scans * PARTS // max(n_scans, 1), minlength=PARTS).astype(np.float64)
    base = float(np.median(counts))
    excess = np.maximum(counts - base, 0.0)
    running = np.convolve(excess, np.ones(PASSING_PARTS), mode="valid").max()
    return base <= BACKGROUND_SHARE * counts.max() and running >= PASSING_SHARE * excess.sum() > 0.0


def _rate(scans: IndexArray, n_scans: int) -> float:
    """The share of scans that show the spot (one plot or more: the others are clutter): its
    mean, or its busiest `BURST_SCANS` scans' where that run is beyond the mean's chance (a
    binomial tail over the survey's runs, `STEADY_CHANCE`)."""
    shown = np.minimum(np.bincount(scans, minlength=n_scans), 1).astype(np.float64)
    mean = float(shown.sum()) / max(n_scans, 1)
    if n_scans <= BURST_SCANS:
        return mean
    total = np.concatenate([[0.0], np.cumsum(shown)])
    busiest = float((total[BURST_SCANS:] - total[:-BURST_SCANS]).max())
    chance = float(binom.sf(busiest - 1.0, BURST_SCANS, mean)) * n_scans / BURST_SCANS
    return busiest / BURST_SCANS if chance < STEADY_CHANCE else mean


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
