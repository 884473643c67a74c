"""The spots of a radar's fixture cells (node/fusion/fixtures.py): which cells hold one
reflector's plots, and which are another's, however close."""

from __future__ import annotations

import math

FRINGE_REACH = 1.5  # sigmas: a cell whose plots sit this close to a busier neighbour's wall is its tail


def around_peaks(
    coords: list[list[int]], counts: list[float], inside: list[list[float]], sigma: float
) -> list[int]:
    """Each cell's peak, or −1 for a cell no peak claims. `inside`: where in the cell its plots'
    centroid lies, per axis from 0 (its low wall) to 1; `sigma`: the radar's sigma in cells.

    The busiest cell first, a cell is a peak unless it is the fringe of a busier neighbour (the
    tail of that one's Gaussian: its centroid lies within `FRINGE_REACH` sigmas of the wall they
    share, on every axis they differ on) or lies between two busier ones (on opposite sides on
    one axis). A peak claims itself and its unclaimed neighbours that are its fringe, and not
    also a fringe of a busier cell across from it (where two reflectors' tails meet, a cell is
    neither's). The centroids are what tell two reflectors ~5 sigmas apart: the second's busiest
    cell, beside the first's, has its centroid deep inside (measured: two masts 5.3 deg apart
    on a 1 deg radar were one spot between them, 2.3 sigmas wide, while the other raised false
    tracks, when a busier neighbour was all it took to be no peak)."""
    index = {tuple(c): i for i, c in enumerate(coords)}
    steps = [(dr, da, de) for dr in (-1, 0, 1) for da in (-1, 0, 1) for de in (-1, 0, 1) if dr or da or de]
    around = [
        [(index.get((r + dr, a + da, e + de), -1), (dr, da, de)) for dr, da, de in steps]
        for r, a, e in coords
    ]

    def fringe(i: int, step: tuple[int, int, int]) -> bool:
        """Whether cell i's plots sit by the wall towards its neighbour at `step` (on each axis it
        differs on), as a tail of that one's do; the centroid of a few plots is given room."""
        reach = (FRINGE_REACH + 2.0 / math.sqrt(max(counts[i], 1e-9))) * sigma
        return all(d == 0 or (1.0 - x if d > 0 else x) <= reach for d, x in zip(step, inside[i], strict=True))

    def busier(i: int) -> list[tuple[int, int, int]]:
        return [step for j, step in around[i] if j >= 0 and counts[j] > counts[i]]

    def between(steps: list[tuple[int, int, int]]) -> bool:
        return any({-1, 1} <= {step[axis] for step in steps} for axis in range(3))

    def tail_of(j: int, toward: tuple[int, int, int]) -> bool:
        """Whether cell j is the fringe of its neighbour at `toward` and of no busier one across
        from it (where two tails meet, the cell is neither's)."""
        across = [t for t in busier(j) if any(t[axis] == -toward[axis] != 0 for axis in range(3))]
        return fringe(j, toward) and not any(fringe(j, t) for t in across)

    peak = [-1] * len(coords)
    for i in sorted(range(len(coords)), key=lambda k: -counts[k]):
        steps = busier(i)
        if peak[i] >= 0 or counts[i] <= 0 or between(steps) or any(fringe(i, step) for step in steps):
            continue
        peak[i] = i
        for j, step in around[i]:
            if j >= 0 and peak[j] < 0 and tail_of(j, (-step[0], -step[1], -step[2])):
                peak[j] = i
    return peak
