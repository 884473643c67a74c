"""The spots of a radar's fixture cells (node/fusion/fixtures.py): which cells hold one
reflector's plots, and which are another's, however close."""

from __future__ import annotations

import math

import numpy as np

FRINGE_REACH = 1.5  # sigmas: a cell whose plots sit this close to a busier neighbour's wall is its tail
UNEXPLAINED = 4.0  # a tail holding this many times what its spot's Gaussian puts there, per axis (and
UNEXPLAINED_PLOTS = 10.0  # this many plots more) is another reflector's cell

Step = tuple[int, int, int]


def around_peaks(
    coords: list[list[int]],
    counts: list[float],
    inside: list[list[float]],
    spread: list[list[float]],
    sigma: float,
) -> list[int]:
    """Each cell's peak, or −1 for a cell no peak claims. `inside`: where in the cell its plots'
    centroid lies, per axis from 0 (its low wall) to 1; `spread`: their variance about it, in
    cells²; `sigma`: the radar's sigma in cells.

    The busiest cell first, a cell is a peak unless it lies between two busier ones (on
    opposite sides on one axis) or is the fringe of a busier neighbour: its centroid lies within
    `FRINGE_REACH` sigmas (and two standard errors of a centroid of its few plots) of the wall
    they share, on every axis they differ on, as a tail of that one's Gaussian does, and it
    holds no more than that neighbour's spot's Gaussian (its cells' plots' mean and scatter)
    puts there, `UNEXPLAINED` times over on each axis it lies off the spot's peak, and
    `UNEXPLAINED_PLOTS` more. A peak claims itself and its unclaimed neighbours that are its
    fringe (by the centroid alone: the count test decides only whether a cell may be a peak),
    and not also a fringe of a busier cell across from it (where two tails meet, a cell is
    neither's). The centroids are what tell two reflectors ~5 sigmas apart: the second's busiest
    cell, beside the first's, has its centroid deep inside (measured: two masts 5.3 deg apart on a
    1 deg radar were one spot between them, 2.3 sigmas wide, while the other raised false tracks,
    when a busier neighbour was all it took to be no peak); the counts tell a faint one beside a
    bright one, whose cell sits by the wall of the cell between them, which the bright one's tail
    and its own plots fill (a review's 0.9 and 0.15 plots a scan, 5 sigmas apart: one spot, the
    faint reflector's plots in none)."""
    around = _neighbours(coords)
    busier = [[(j, step) for j, step in around[i] if counts[j] > counts[i]] for i in range(len(coords))]

    def fringe(i: int, step: Step) -> bool:
        """Whether cell i's plots sit by the wall towards its neighbour at `step` (on each axis it
        differs on), as a tail of that one's do; the centroid of a few plots is given room."""
        reach = (FRINGE_REACH + 2.0 / math.sqrt(max(counts[i], 1e-9))) * sigma
        return all(d == 0 or (1.0 - x if d > 0 else x) <= reach for d, x in zip(step, inside[i], strict=True))

    def tail_of(j: int, toward: Step) -> bool:
        """Whether cell j is the fringe of its neighbour at `toward` and of no busier one across
        from it (where two tails meet, the cell is neither's)."""
        across = [t for _, t in busier[j] if any(t[axis] == -toward[axis] != 0 for axis in range(3))]
        return fringe(j, toward) and not any(fringe(j, t) for t in across)

    peak = [-1] * len(coords)
    members: dict[int, list[int]] = {}  # each peak's cells
    gaussians: dict[int, tuple[list[float], list[float], float]] = {}  # its spot, once asked

    def explained(i: int, by: int) -> bool:
        """Whether cell i holds no more than the spot of the peak that claimed cell `by` puts there."""
        if peak[by] < 0:  # a busier cell no spot holds: i is its tail all the same
            return True
        if peak[by] not in gaussians:
            gaussians[peak[by]] = _gaussian(members[peak[by]], coords, counts, inside, spread, sigma)
        mean, sd, total = gaussians[peak[by]]
        mass = _cell_mass(coords[i], mean, sd)
        # per axis away from the peak's cell: the scatter of a swaying reflector, measured on
        # its cells alone, is cut short, and its tail outruns the Gaussian on each axis
        away = sum(a != b for a, b in zip(coords[i], coords[peak[by]], strict=True))
        return counts[i] <= UNEXPLAINED ** max(away, 1) * total * mass + UNEXPLAINED_PLOTS

    for i in sorted(range(len(coords)), key=lambda k: -counts[k]):
        steps = [step for _, step in busier[i]]
        if peak[i] >= 0 or counts[i] <= 0 or any({-1, 1} <= {s[axis] for s in steps} for axis in range(3)):
            continue
        if any(fringe(i, step) and explained(i, j) for j, step in busier[i]):
            continue
        peak[i], members[i] = i, [i]
        for j, step in around[i]:
            if peak[j] < 0 and tail_of(j, (-step[0], -step[1], -step[2])):
                peak[j] = i
                members[i].append(j)
    return peak


def _gaussian(
    cells: list[int],
    coords: list[list[int]],
    counts: list[float],
    inside: list[list[float]],
    spread: list[list[float]],
    sigma: float,
) -> tuple[list[float], list[float], float]:
    """A spot's plots' mean and scatter (never under the radar's), in cells, and how many plots
    it has in all: those its cells hold over the share of its Gaussian they cover."""
    n = sum(counts[k] for k in cells)
    mean = [sum(counts[k] * (coords[k][a] + inside[k][a]) for k in cells) / n for a in range(3)]
    var = [
        sum(counts[k] * (spread[k][a] + (coords[k][a] + inside[k][a] - mean[a]) ** 2) for k in cells) / n
        for a in range(3)
    ]
    sd = [math.sqrt(max(v, sigma * sigma)) for v in var]
    held = sum(_cell_mass(coords[k], mean, sd) for k in cells)
    return mean, sd, n / max(held, 0.05)


def _cell_mass(cell: list[int], mean: list[float], sd: list[float]) -> float:
    """The share of a Gaussian (per axis: mean, sd, in cells) that falls in a cell."""
    mass = 1.0
    for c, m, s in zip(cell, mean, sd, strict=True):
        mass *= 0.5 * (
            math.erfc((c - m) / (s * math.sqrt(2.0))) - math.erfc((c + 1 - m) / (s * math.sqrt(2.0)))
        )
    return mass


_STEPS = np.array(
    [(dr, da, de) for dr in (-1, 0, 1) for da in (-1, 0, 1) for de in (-1, 0, 1) if dr or da or de]
)


def _neighbours(coords: list[list[int]]) -> list[list[tuple[int, Step]]]:
    """Each cell's neighbours among the cells (26-neighbourhood), with the step to each."""
    if not coords:
        return []
    c = np.asarray(coords, dtype=np.int64)
    low, width = c.min(axis=0) - 1, c.max(axis=0) - c.min(axis=0) + 3
    keys = (c - low) @ np.array([width[1] * width[2], width[2], 1])
    order = np.argsort(keys)
    wanted = (c[:, None, :] + _STEPS[None] - low) @ np.array([width[1] * width[2], width[2], 1])
    at = np.minimum(np.searchsorted(keys[order], wanted), keys.size - 1)
    found = keys[order][at] == wanted
    rows, cols = np.nonzero(found)
    j = order[at[rows, cols]]
    out: list[list[tuple[int, Step]]] = [[] for _ in coords]
    steps = [(int(a), int(b), int(d)) for a, b, d in _STEPS]
    for i, k, n in zip(rows.tolist(), cols.tolist(), j.tolist(), strict=True):
        out[i].append((n, steps[k]))
    return out
