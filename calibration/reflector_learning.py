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
from scipy.special import bdtrc

from cuas_node.fusion.models import radar_innovation
from cuas_node.fusion.reflectors import SiteReflectors
from cuas_node.fusion.tails import poisson_isf

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
MIN_BACKGROUND_PLOTS = 30  # and the least plots (a rate estimated to about 20 %)


@dataclass(frozen=True)
class View:
    """A radar's coverage on the counting cells: its range rows (from `first_row`), azimuth
    columns and elevation rows (`lifts`, from `first_lift`), cells `CELL_SIGMAS` sigmas wide."""

    first_row: int
    rows: int
    columns: float
    first_lift: int
    lifts: int

    @classmethod
    def of(cls, cell: FloatArray, coverage: tuple[float, float, float, float]) -> View:
        """From a radar's (min range m, max range m, azimuth and elevation half-widths rad)."""
        near, far, fov_az, fov_el = coverage
        first_row, last_row = math.floor(near / cell[0]), math.floor(far / cell[0])
        first_lift, last_lift = math.floor(-fov_el / cell[2]), math.floor(fov_el / cell[2])
        columns = max(2.0 * fov_az / cell[1], 1.0)
        return cls(first_row, last_row - first_row + 1, columns, first_lift, last_lift - first_lift + 1)

    @property
    def cells(self) -> float:
        return self.rows * self.columns * self.lifts

    def holding(self, keys: npt.NDArray[np.int64]) -> View:
        """This view widened to the rows and lifts of cells that plots fall in (a radar sees a
        little past its nominal coverage: judged there against nothing, plots just short of
        `min_range_m` made 150 false spots)."""
        first_row = min(self.first_row, int(keys[:, 0].min()))
        last_row = max(self.first_row + self.rows - 1, int(keys[:, 0].max()))
        first_lift = min(self.first_lift, int(keys[:, 2].min()))
        last_lift = max(self.first_lift + self.lifts - 1, int(keys[:, 2].max()))
        return View(first_row, last_row - first_row + 1, self.columns, first_lift, last_lift - first_lift + 1)


@dataclass
class Survey:
    """What a survey holds: the site's reflectors, and the spots it saw only for a moment (what
    passed through: a car, a walker, a bird), as (K, D) means, left out of the map."""

    reflectors: SiteReflectors
    passing: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))


def learn_reflectors(
    z: FloatArray,
    scan_of: IndexArray,
    n_scans: int,
    sigma: FloatArray,
    coverage: tuple[float, float, float, float],
    phase: FloatArray | None = None,
) -> Survey:
    """The spots where plots recur beyond the clutter around them, from every plot `z` (N, D) of
    `n_scans` scans of a site (`scan_of` (N,): the scan of each, 0..n_scans-1 in time order, gaps
    of the recording left out). `sigma` (D,): the radar's specified accuracy per row;
    `coverage`: (min range m, max range m, azimuth and elevation half-widths rad); `phase`
    (N,), a scanning radar's: each plot's time within its scan, in periods (`_rate`).

    - A cell's 3×3×3 neighbourhood is a spot when it holds more plots than the cells around it
      at the same ranges and elevations explain (`_backgrounds`), beyond chance `FAMILY_FALSE_SPOTS` over all
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
    view = View.of(cell, coverage)
    keys = np.floor(z[:, :3] / cell).astype(np.int64)
    cells, where, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    where = where.ravel()
    around = _neighbourhood_counts(cells, counts)
    expected = _backgrounds(keys, cells, around, view.holding(keys))
    bar = np.maximum(poisson_isf(FAMILY_FALSE_SPOTS / view.cells, expected) + 1.0, MIN_PLOTS)
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
            near = ~taken & np.all(np.abs(radar_innovation(z, centre)) <= GATHER_SIGMAS * sigma, axis=1)
            if not near.any():
                break
            centre = centre + radar_innovation(z[near], centre).mean(axis=0)
        if near.sum() < bar[c]:
            continue
        taken |= near
        if _passing(scan_of[near], n_scans, float(bar[c])):
            passing.append(centre)
            continue
        nu = radar_innovation(z[near], centre)
        n = int(near.sum())
        cov = nu.T @ nu / n + np.diag(RIDGE * sigma**2) if n > 3 * dim else np.diag(sigma**2)
        kept.append((centre, cov, _rate(scan_of[near], n_scans, None if phase is None else phase[near])))
    reflectors = empty.reflectors
    if kept:
        reflectors = SiteReflectors(
            np.array([k[0] for k in kept]), np.array([k[1] for k in kept]), np.array([k[2] for k in kept])
        )
    return Survey(reflectors, np.array(passing).reshape(-1, dim))


def _backgrounds(
    keys: npt.NDArray[np.int64], cells: npt.NDArray[np.int64], around: FloatArray, view: View
) -> FloatArray:
    """What each cell's neighbourhood would hold if the clutter at its range and elevation were
    spread evenly over the azimuths in view: the plots of the band of range rows within ±w of it
    and elevation rows within ±1, less its own neighbourhood's, over the band's other cells in
    view. Clutter varies with range (denser near the radar) and with elevation (it hugs the
    ground), and both are the site's background; a reflector stands out of the azimuths beside
    it. The band of range rows is the narrowest (w = 1, 2, 4, ...) that holds
    `MIN_BACKGROUND_CELLS` and `MIN_BACKGROUND_PLOTS` besides the cell's own neighbourhood (a
    narrow view, sparse clutter far out), up to the whole range; never the whole coverage's mean
    (60 % of the clutter in
    the nearest fifth of a ±3° view made 30 false spots that way; clutter above the ground only,
    judged against every elevation in view, made 751)."""
    rows = keys[:, 0] - view.first_row
    lifts = keys[:, 2] - view.first_lift
    pad = view.rows + 1  # the widest band reaches the whole range from any row
    grid = np.zeros((view.rows + 2 * pad, view.lifts + 4))
    inside = (rows >= 0) & (rows < view.rows) & (lifts >= 0) & (lifts < view.lifts)
    np.add.at(grid, (rows[inside] + pad, lifts[inside] + 2), 1.0)
    summed = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1))
    summed[1:, 1:] = grid.cumsum(axis=0).cumsum(axis=1)
    i = np.clip(cells[:, 0] - view.first_row, -1, view.rows) + pad
    j = np.clip(cells[:, 2] - view.first_lift, -1, view.lifts) + 2
    j0, j1 = j - 1, j + 2
    in_lifts = np.maximum(np.minimum(j1, view.lifts + 2) - np.maximum(j0, 2), 0)
    expected = np.full(cells.shape[0], np.nan)
    w = 1
    while True:  # each cell takes the narrowest band of range rows that holds enough to judge by
        i0, i1 = i - w, i + w + 1
        band = summed[i1, j1] - summed[i0, j1] - summed[i1, j0] + summed[i0, j0] - around
        in_rows = np.minimum(i1, view.rows + pad) - np.maximum(i0, pad)
        others = in_rows * in_lifts * view.columns - 27.0
        widest = w >= view.rows
        enough = (others >= MIN_BACKGROUND_CELLS) & (band >= MIN_BACKGROUND_PLOTS) | widest
        take = enough & np.isnan(expected)
        expected[take] = 27.0 * np.maximum(band[take], 0.0) / np.maximum(others[take], 1.0)
        if widest or not np.isnan(expected).any():
            return expected
        w = min(2 * w, view.rows)


def _passing(scans: IndexArray, n_scans: int, bar: float) -> bool:
    """Whether a spot's plots came in a moment of the survey, counted per tenth, by either test:
    - its median tenth (the clutter that falls in its box at any time) is under
      `BACKGROUND_SHARE` of its busiest, and of its plots beyond that, `PASSING_SHARE` came within
      `PASSING_PARTS` tenths running;
    - or its plots outside its busiest `PASSING_PARTS` tenths running would not make a spot (under
      the spot's bar, scaled to the rest of the survey) and so many in those tenths are beyond
      chance for plots spread evenly in time (`STEADY_CHANCE`): what is left of a car's trail
      where its pieces hold few plots besides a clutter plot or two.
    A steady reflector's tenths are alike; a bursty one's excess is spread over its bursts."""
    counts = np.bincount(scans * PARTS // max(n_scans, 1), minlength=PARTS).astype(np.float64)
    base = float(np.median(counts))
    excess = np.maximum(counts - base, 0.0)
    running = np.convolve(excess, np.ones(PASSING_PARTS), mode="valid").max()
    if base <= BACKGROUND_SHARE * counts.max() and running >= PASSING_SHARE * excess.sum() > 0.0:
        return True
    window = np.convolve(counts, np.ones(PASSING_PARTS), mode="valid")
    busiest, total = float(window.max()), float(counts.sum())
    share = PASSING_PARTS / PARTS
    windows = PARTS - PASSING_PARTS + 1
    unlikely = float(bdtrc(busiest - 1.0, round(total), share)) * windows < STEADY_CHANCE
    return total - busiest < bar * (1.0 - share) and unlikely


def _rate(scans: IndexArray, n_scans: int, phase: FloatArray | None = None) -> float:
    """The share of scans that show the spot (one plot or more: the others are clutter): its
    mean, or its busiest `BURST_SCANS` scans' where that run is beyond the mean's chance (a
    binomial tail, times the survey's sliding runs: `STEADY_CHANCE`). `phase` (a scanning
    radar's): each plot's time within its scan's period, in periods; its scans are periods from
    its first plot, and a reflector whose pass falls on a period's edge, stamped with jitter,
    lands now in one scan, now in the next (its share came out at 0.71 of 0.86): each plot is
    numbered by its pass instead, the nearest to its time about the spot's own phase."""
    if phase is not None and phase.size:  # number each plot by its pass, about the spot's phase
        turn = np.angle(np.exp(2j * np.pi * phase).mean()) / (2.0 * np.pi)
        scans = np.clip(np.round(scans + phase - turn), 0, n_scans - 1).astype(np.intp)
    shown = np.minimum(np.bincount(scans, minlength=n_scans), 1).astype(np.float64)
    mean = float(shown.sum()) / max(n_scans, 1)
    if n_scans <= BURST_SCANS:
        return mean
    total = np.concatenate([[0.0], np.cumsum(shown)])
    busiest = float((total[BURST_SCANS:] - total[:-BURST_SCANS]).max())
    chance = float(bdtrc(busiest - 1.0, BURST_SCANS, mean)) * (n_scans - BURST_SCANS + 1)
    return busiest / BURST_SCANS if chance < STEADY_CHANCE else mean


def _neighbourhood_counts(cells: npt.NDArray[np.int64], counts: npt.NDArray[np.intp]) -> FloatArray:
    """Each occupied cell's plots plus its 26 neighbours'."""
    lookup = {tuple(c): int(n) for c, n in zip(cells.tolist(), counts.tolist(), strict=True)}
    steps = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]
    return np.array(
        [sum(lookup.get((i + a, j + b, k + c), 0) for a, b, c in steps) for i, j, k in cells.tolist()],
        dtype=np.float64,
    )
