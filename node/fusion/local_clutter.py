"""Where clutter is dense now: places that give more plots in a scan than one object would.

The track score prices a plot at the radar's uniform false-alarm density, plus what the survey
map and the learnt fixtures (`fixtures`, after most of an hour) add. A tree in the wind, a
hedge, rain over a field or the spray of a road give plots that fall, scan after scan, in one
small place and several at a time: priced at the uniform density, each scan's plots there look
like a target's, and tracks confirm on them by the dozen a minute (an outside generator's tree
spots of 1-5 plots a scan: 20-45 false confirmed tracks a minute). What tells such a place from
a drone is the count: a point target gives a radar at most one plot a scan (a plot extractor
resolves each object once; a clusterer's split return is one object, merged here as
`tracks.distinct` merges births), so the plots of one scan in one neighbourhood beyond the first
are clutter there, whatever the rest are.

Each radar's measurement space (range, azimuth, elevation) is cut into cells `CELL_SIGMAS` of its
sigmas a side (azimuth cells wrap round). Every scan, each plot that no established track took
(those are targets already followed) and that shares its 3×3×3 neighbourhood with k − 1 others
adds (k − 1)/k to its cell, with its moments: a cluster of k plots within each other's
neighbourhoods adds k − 1 in all (one spread wider adds less), a lone plot nothing, so a young
drone alone adds nothing at all. Counts and scans decay with a half-life of `HALF_LIFE_S`.

At each plot the cells around it give a local density: the neighbourhood's excess plots a scan,
at a low quantile of its Poisson evidence (`LOWER_QUANTILE`) over the scans seen plus
`PRIOR_SCANS`, turned into the rate of plots behind it (`plots_per_scan`) less what the radar's
uniform clutter puts in a neighbourhood (its own chance pairs: dense uniform clutter is priced
once, not twice), spread as the mixture of the cells' Gaussians (3 sigmas wide, a cell's
position moments are mostly the radar's noise at their centroid; its range-rate moments say
whether the place stands still). The density is added to λ, so a plot in such a place scores
what it tells above the place's own plots.

The prices, measured (docs/architecture.md): a drone inside a clutter spot is tracked as near a
surveyed reflector; young drones side by side are excess until their tracks confirm (the prior
and the low quantile make so little evidence count for little, but at 3-4 beams apart the
slower of a pair confirms later); and a track that confirmed on a spot before the map knew it
lives on it while the spot lasts (its plots are an established track's, so they hide the
spot's excess; counting them made a drone arriving beside a confirmed one confirm late or
never). Plots of a one-plot-at-a-time scanning radar never share a scan: its map stays empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import gammaincinv, lambertw

from cuas_node.fusion.fixtures import MAX_CELL, pack_cells
from cuas_node.fusion.measurement_models import MeasurementModel
from cuas_node.fusion.sensor_stats import SensorStats, is_radar
from cuas_node.fusion.tracks import SAME_OBJECT_SIGMAS, first_of_each
from cuas_node.kernel.pose import wrap

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
CellArray = npt.NDArray[np.int64]

Map = TypeVar("Map")
CELL_SIGMAS = 3.0  # a cell is this many of the radar's sigmas a side (a neighbourhood: three cells)
HALF_LIFE_S = 60.0  # the memory of the map: a spot that stops giving plots fades within minutes
PRIOR_SCANS = 20.0  # scans of no excess assumed besides those seen: young neighbours confirm first
LOWER_QUANTILE = 1e-3  # a spot's rate is what its excess plots show at this Poisson quantile
SPOT_RATE = 0.1  # a place counts as a clutter spot (health) at one plot in ten scans above uniform
NEGLIGIBLE = 0.01  # a map that could add less than this share of the uniform λ anywhere is not read
# Two plots of a clusterer's scan in neighbouring cells with Σ(Δ/σ)² under this are one object:
# `tracks.distinct`'s rule with each axis in its sigmas (a trace of 3 a plot).
SPLIT_D2 = 2.0 * SAME_OBJECT_SIGMAS**2
_SILENCE_PERIODS = 30.0  # a gap longer than this many scan periods counts as one scan, not many
_FOLD_AT = math.log(2.0)  # the time scale is folded into the counts once a half-life (cheap) …
_KEEP = 0.05  # … and cells whose decayed count fell under this dropped: a stray pair's in 3-4 minutes
_SERIES_BELOW = 1e-8  # `plots_per_scan` takes its series below this excess (the rest: Lambert W)
_OFFSET = np.array([0.0, math.pi, math.pi / 2])  # azimuth and elevation cells count from −π, −π/2
_AROUND = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=np.int64)


class LocalClutter:
    """One radar's map of excess plots (`observe`) and the density it adds at plots (`density`),
    for detections of D rows (a range-rate radar's detections that lack it have a map of their
    own: their moments are of other rows)."""

    def __init__(self, sigmas: FloatArray, splits_objects: bool, coverage_volume: float) -> None:
        self.sigmas = sigmas  # (D,) range, angle, angle[, range-rate]: the floor of a spot's spread
        self.dim = sigmas.size
        self.size = CELL_SIGMAS * sigmas[:3]
        # Azimuth cells tile the circle exactly (a last cell narrower, or a sliver, split a spot astern).
        self.n_az = max(math.floor(2.0 * math.pi / self.size[1] + 1e-9), 3)
        self.size[1] = 2.0 * math.pi / self.n_az
        # The radar's uniform clutter in one neighbourhood, per false alarm a scan.
        self.share = 27.0 * float(np.prod(self.size)) / coverage_volume
        # The density of a spot as narrow as the radar's noise at its centre, per plot a scan.
        self.peak = 1.0 / math.sqrt(float(np.prod(2.0 * math.pi * sigmas**2)))
        self.splits_objects = splits_objects
        self.decay = math.log(2.0) / HALF_LIFE_S
        self.keys = np.zeros(0, dtype=np.int64)  # sorted
        self.coords = np.zeros((0, 3), dtype=np.int64)
        self.count = np.zeros(0)  # excess plots (scaled by `scale`)
        self.sums = np.zeros((0, self.dim))  # their moments, weighted alike
        self.squares = np.zeros((0, self.dim))
        self.scans = 0.0  # scans seen (scaled)
        self.t_ref = math.nan
        self.last_t = -math.inf

    def _cells(self, z: FloatArray) -> CellArray:
        coords = np.floor((z[:, :3] + _OFFSET) / self.size).astype(np.int64)
        coords[:, 1] %= self.n_az
        # (np.minimum and np.maximum: np.clip costs several times more on arrays this small)
        return np.minimum(np.maximum(coords, 0), MAX_CELL - 2)

    def _around(self, coords: CellArray, keys: CellArray) -> tuple[IndexArray, IndexArray]:
        """Pairs (i, j): cell j of the sorted `keys` is one of the 27 around `coords[i]`."""
        around = coords[:, None, :] + _AROUND[None]
        around[:, :, 1] %= self.n_az
        wanted = pack_cells(around.reshape(-1, 3))
        at = np.searchsorted(keys, wanted)
        ok = at < keys.size
        ok[ok] = keys[at[ok]] == wanted[ok]
        return np.flatnonzero(ok) // 27, at[ok]

    def _scale(self, t: float) -> float:
        """Counts are stored scaled by exp(decay · (t − t_ref)) and read back divided by it, so
        that time decays the map without touching it every scan (`clutter.ClutterMap._weight`)."""
        if not math.isfinite(self.t_ref):
            self.t_ref = t
        exponent = self.decay * (max(t, self.last_t) - self.t_ref)
        if exponent > _FOLD_AT:
            factor = math.exp(-exponent)
            self.count, self.sums, self.squares = (
                self.count * factor,
                self.sums * factor,
                self.squares * factor,
            )
            self.scans *= factor
            keep = self.count >= _KEEP
            for name in ("keys", "coords", "count", "sums", "squares"):
                setattr(self, name, getattr(self, name)[keep])
            self.t_ref, exponent = max(t, self.last_t), 0.0
        return math.exp(exponent)

    def observe(self, t: float, z: FloatArray, counted: BoolArray, period_s: float) -> None:
        """A scan at time t: its plots `z` (M, D), of which `counted` are no established track's.
        A scan earlier than the last adds no time (its interval was counted)."""
        scale = self._scale(t)
        step = t - self.last_t
        timed = period_s > 0 and step <= _SILENCE_PERIODS * period_s
        self.scans += (0.0 if step < 0 else step / period_s if timed else 1.0) * scale
        self.last_t = max(self.last_t, t)
        z = z[counted]
        if z.shape[0] < 2:
            return
        coords = self._cells(z)
        crowded = _in_rows_around(coords[:, 0], np.sort(coords[:, 0])) >= 2  # itself and another
        if np.count_nonzero(crowded) < 2:  # (most scans of sparse clutter: no plot has a neighbour)
            return
        z, coords = z[crowded], coords[crowded]
        cells, inverse, held = np.unique(pack_cells(coords), return_inverse=True, return_counts=True)
        a, u = self._around(coords, cells)  # plot a, a cell of its neighbourhood holding plots
        # Every plot b of cell u is a neighbour of a (b = a among them).
        members = np.argsort(inverse, kind="stable")
        first = np.cumsum(held) - held
        a = np.repeat(a, held[u])
        b = members[np.arange(a.size) + np.repeat(first[u] - np.cumsum(held[u]) + held[u], held[u])]
        a, b = a[a != b], b[a != b]
        if self.splits_objects and a.size:  # a clusterer's split return is one object
            close = np.zeros((z.shape[0], z.shape[0]), dtype=bool)
            step_az = z[a, :3] - z[b, :3]
            step_az[:, 1] = wrap(step_az[:, 1])
            near = np.sum((step_az / self.sigmas[:3]) ** 2, axis=1) < SPLIT_D2
            close[a[near], b[near]] = True
            keep = first_of_each(close)
            both = keep[a] & keep[b]
            a, b = a[both], b[both]
        if not a.size:
            return
        k = 1.0 + np.bincount(a, minlength=z.shape[0])
        some = k > 1.0
        self._add(coords[some], (k[some] - 1.0) / k[some] * scale, z[some])

    def _add(self, coords: CellArray, weight: FloatArray, z: FloatArray) -> None:
        keys = pack_cells(coords)
        new, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        count = np.bincount(inverse, weights=weight)
        sums = np.stack([np.bincount(inverse, weights=weight * c) for c in z.T], axis=1)
        squares = np.stack([np.bincount(inverse, weights=weight * c * c) for c in z.T], axis=1)
        at = np.searchsorted(self.keys, new)
        found = at < self.keys.size
        found[found] = self.keys[at[found]] == new[found]
        hit = at[found]
        self.count[hit] += count[found]
        self.sums[hit] += sums[found]
        self.squares[hit] += squares[found]
        miss = ~found
        where = at[miss]
        self.keys = np.insert(self.keys, where, new[miss])
        self.coords = np.insert(self.coords, where, coords[first[miss]], axis=0)
        self.count = np.insert(self.count, where, count[miss])
        self.sums = np.insert(self.sums, where, sums[miss], axis=0)
        self.squares = np.insert(self.squares, where, squares[miss], axis=0)

    def density(self, t: float, z: FloatArray, clutter: float, false_alarms: float) -> FloatArray | None:
        """The excess plots' density at each plot (per scan and unit of measurement space), above
        what `false_alarms` uniform ones a scan put there; None where it could add under
        `NEGLIGIBLE` of the uniform density `clutter` anywhere (all the map's excess in one
        neighbourhood, as narrow as the radar's noise: the map of uniform clutter holds a few
        stray pairs, not worth a lookup every scan)."""
        if not self.keys.size or not z.shape[0]:
            return None
        scale = self._scale(t)
        # An upper bound of the rate (the count itself, and ρ ≤ E + √(2E)), in scalars: cheap.
        excess = float(self.count.sum()) / max(self.scans, scale)
        if (excess + math.sqrt(2.0 * excess)) * self.peak < NEGLIGIBLE * clutter:
            return None
        cells = self._cells(z)
        near = np.flatnonzero(_in_rows_around(cells[:, 0], self.coords[:, 0]) > 0)  # (rows: sorted)
        q, c = self._around(cells[near], self.keys)
        if not q.size:
            return None
        q = near[q]
        m = z.shape[0]
        w = self.count[c]
        n = np.asarray(np.bincount(q, weights=w, minlength=m), dtype=np.float64)
        some = n > 0.0
        rate = np.zeros(m)
        evidence = gammaincinv(n[some] / scale, LOWER_QUANTILE) / (self.scans / scale + PRIOR_SCANS)
        rate[some] = np.maximum(plots_per_scan(evidence) - false_alarms * self.share, 0.0)
        if not rate.any():
            return None
        # Each cell its own Gaussian (its plots' moments, never narrower than the radar's noise),
        # weighed by its share of the neighbourhood's excess: a drone beside a spot is priced at
        # the spot's tail, not at a Gaussian pooled over both (more false tracks, and a drone
        # never confirmed, when tried).
        mean = self.sums[c] / w[:, None]
        var = np.maximum(self.squares[c] / w[:, None] - mean**2, self.sigmas**2)
        nu = z[q] - mean
        nu[:, 1] = wrap(nu[:, 1])
        pdf = np.exp(-0.5 * np.sum(nu**2 / var, axis=1)) / np.sqrt(np.prod(2.0 * math.pi * var, axis=1))
        mixture = np.bincount(q, weights=w * pdf, minlength=m) / np.maximum(n, 1e-300)
        return np.asarray(rate * mixture, dtype=np.float64)

    def spots(self, t: float, false_alarms: float) -> int:
        """Places the map prices as clutter: groups of touching cells whose neighbourhoods' excess,
        at the low quantile `density` prices at, says `SPOT_RATE` plots a scan or more above
        uniform clutter (a spot spread over several cells is one place; the point estimate read
        9-10 places in an outside user's 43 uniform false alarms a scan at 1 Hz: chance pairs)."""
        if not self.keys.size:
            return 0
        scale = self._scale(t if math.isfinite(t) else self.last_t)
        q, c = self._around(self.coords, self.keys)
        held = np.bincount(q, weights=self.count[c], minlength=self.keys.size)
        # The low quantile is below the point estimate: only the cells that one passes are asked.
        above = (
            plots_per_scan(held / (self.scans + PRIOR_SCANS * scale)) - false_alarms * self.share >= SPOT_RATE
        )
        some = np.flatnonzero(above)
        around = gammaincinv(held[some] / scale, LOWER_QUANTILE) / (self.scans / scale + PRIOR_SCANS)
        above[some] = plots_per_scan(around) - false_alarms * self.share >= SPOT_RATE
        both = above[q] & above[c]
        n = self.keys.size
        touching = coo_matrix((np.ones(np.count_nonzero(both)), (q[both], c[both])), shape=(n, n))
        groups = connected_components(touching, directed=False)[1]
        return int(np.unique(groups[above]).size)


def _in_rows_around(rows: CellArray, sorted_rows: CellArray) -> IndexArray:
    """How many of `sorted_rows` lie within one of each row: a cheap first cut before the 27-cell
    lookup, which only the plots near occupied range rows need."""
    hi = np.searchsorted(sorted_rows, rows + 1, side="right")
    return np.asarray(hi - np.searchsorted(sorted_rows, rows - 1, side="left"), dtype=np.intp)


def plots_per_scan(excess: FloatArray) -> FloatArray:
    """The Poisson rate ρ whose plots beyond the first a scan average `excess`: ρ − 1 + e^−ρ = E,
    so ρ = 1 + E + W₀(−e^(−1−E)) (Lambert W). A sparse spot's excess understates it (one plot a
    scan in three: E = 0.05, ρ = 0.33); uniform clutter's ρ is what the radar's rate puts in a
    neighbourhood, which `LocalClutter.density` takes off."""
    # Near 0, W's argument rounds onto its branch point (NaN): there the series in s = √(2E),
    # ρ = s + s²/6 + s³/36 + O(s⁴).
    root = np.sqrt(2.0 * np.maximum(excess, 0.0))
    rho = root + root**2 / 6.0 + root**3 / 36.0
    some = excess > _SERIES_BELOW
    rho[some] = np.real(1.0 + excess[some] + lambertw(-np.exp(-1.0 - excess[some])))
    return np.maximum(rho, 0.0)


class PerRadar(Generic[Map]):
    """Maps of a site's radars, one per radar and detection rows (a range-rate radar's detections
    that lack range-rate have their own), each made by `make` from the radar's sigmas
    (`SensorStats.radar_sigmas`) and model at its first scan whose accuracy is known."""

    def __init__(self, enabled: bool, make: Callable[[FloatArray, MeasurementModel], Map]) -> None:
        self.enabled = enabled
        self.maps: dict[tuple[int, int], Map] = {}
        self._make = make

    def _map(self, bit: int, model: MeasurementModel, rows: int, stats: SensorStats) -> Map | None:
        found = self.maps.get((bit, rows))
        if found is not None or not is_radar(model) or not self.enabled:
            return found
        sigmas = stats.radar_sigmas(bit, rows)
        if sigmas is None:  # accuracy not known yet: its first plots
            return None
        found = self.maps[(bit, rows)] = self._make(sigmas, model)
        return found


class SiteLocalClutter(PerRadar[LocalClutter]):
    """The local clutter maps of a site's radars (`PerRadar`)."""

    def __init__(self, enabled: bool = True) -> None:  # `fusion.local_clutter`
        super().__init__(
            enabled, lambda sigmas, m: LocalClutter(sigmas, m.splits_objects, m.coverage.volume())
        )

    def density(
        self, bit: int, model: MeasurementModel, t: float, z: FloatArray, clutter: float, stats: SensorStats
    ) -> FloatArray | None:
        local = self._map(bit, model, z.shape[1], stats)
        return None if local is None else local.density(t, z, clutter, float(stats.false_alarms[bit]))

    def observe(
        self,
        bit: int,
        model: MeasurementModel,
        t: float,
        z: FloatArray,
        counted: BoolArray,
        stats: SensorStats,
    ) -> None:
        local = self._map(bit, model, z.shape[1], stats)
        if local is not None:
            local.observe(t, z, counted, float(stats.period_s[bit]))

    def spots(self, t: float, stats: SensorStats, bit: int | None = None) -> int:
        """Places priced as clutter now (`LocalClutter.spots`): of one radar, or of all
        (`health.fusion.clutter_spots`); a range-rate radar's two maps (plots with and without
        range-rate) see the same places: the larger count of the two."""
        per_radar: dict[int, int] = {}
        for (b, _), local in self.maps.items():
            if bit is None or b == bit:
                per_radar[b] = max(per_radar.get(b, 0), local.spots(t, float(stats.false_alarms[b])))
        return sum(per_radar.values())
