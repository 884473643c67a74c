"""Where clutter is dense now: places that give more plots in a scan than one object would.

The track score prices a plot at the radar's uniform false-alarm density, plus what the survey
map and the learnt fixtures (`fixtures`, after most of an hour) add. A tree in the wind, a
hedge, rain over a field or the spray of a road give plots that fall, scan after scan, in one
small place and several at a time: priced at the uniform density, each scan's plots there look
like a target's, and tracks confirm on them by the dozen a minute (an outside generator's tree
spots of 1-5 plots a scan: 20-45 false confirmed tracks a minute). What tells such a place from
a drone, within seconds, is the count: a point target gives a radar at most one plot a scan
(a plot extractor resolves each object once; a clusterer's split return is one object, merged
here as in `tracks.distinct`), so the plots of one scan in one neighbourhood beyond the first
are clutter there, whatever the rest are.

Each radar's measurement space (range, azimuth, elevation) is cut into cells `CELL_SIGMAS` of its
sigmas a side. Every scan, each plot that no established track took (those are targets already
followed) and that shares its 3×3×3 neighbourhood with k − 1 others adds (k − 1)/k to its
cell, with its position (and range-rate) moments: a cluster of k plots adds k − 1 in all, a lone
plot nothing, so uniform clutter, however dense, adds next to nothing, and a young drone alone
adds nothing at all. Counts and scans decay with a half-life of `HALF_LIFE_S`.

At each plot the cells around it give a local density: a Gaussian of their plots' moments
(never narrower than the radar's own noise) times their excess plots per scan, taken at a low
quantile of its Poisson evidence (`LOWER_QUANTILE`) over the scans seen plus `PRIOR_SCANS`
(a pair of young drones close together adds an excess plot a scan until their tracks confirm,
a few scans: it must not price them as clutter; a tree does so for ever). That is added to λ,
so a plot in such a place scores what it tells above the place's own plots. The price is that a
drone inside a clutter spot is tracked as near a surveyed reflector (docs/architecture.md).
Plots of a one-plot-at-a-time scanning radar never share a scan, so its map stays empty.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import gammaincinv, lambertw

from cuas_node.fusion.fixtures import MAX_CELL, pack_cells
from cuas_node.fusion.measurement_models import MeasurementModel
from cuas_node.fusion.sensor_stats import SensorStats, is_radar
from cuas_node.fusion.tracks import first_of_each

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

CELL_SIGMAS = 3.0  # a cell is this many of the radar's sigmas a side (a neighbourhood: three cells)
HALF_LIFE_S = 60.0  # the memory of the map: a spot that stops giving plots fades within minutes
PRIOR_SCANS = 20.0  # scans of no excess assumed before the first: young neighbours confirm first
LOWER_QUANTILE = 1e-3  # a spot's rate is what its excess plots show at this Poisson quantile
SPOT_RATE = 0.1  # a place counts as a clutter spot (health) at one excess plot in ten scans
NEGLIGIBLE = 0.01  # a map that could add less than this share of the uniform λ anywhere is not read
SPLIT_D2 = 18.0  # two plots of a clusterer's scan nearer than this (sum of squared sigmas) are one
_SILENCE_PERIODS = 30.0  # a gap longer than this many scan periods counts as one scan, not many
_FOLD_AT = math.log(2.0)  # the time scale is folded into the counts once a half-life (cheap) …
_KEEP = 0.05  # … and cells whose decayed count fell under this dropped: a stray pair's in 3-4 minutes
_FIRST = int(pack_cells(np.array([[0, -1, -1]]))[0])  # row 0's first key: range-major packing
_ROW = int(pack_cells(np.array([[1, -1, -1]]))[0]) - _FIRST  # one range row further
_OFFSET = np.array([0.0, math.pi, math.pi / 2])  # azimuth and elevation cells count from −π, −π/2


class LocalClutter:
    """One radar's map of excess plots (`observe`) and the density it adds at plots (`density`)."""

    def __init__(self, sigmas: FloatArray, splits_objects: bool) -> None:
        self.sigmas = sigmas  # (D,) range, angle, angle[, range-rate]: the floor of a spot's spread
        self.dim = sigmas.size
        self.size = CELL_SIGMAS * sigmas[:3]
        # The density of a spot as narrow as the radar's noise at its centre, per plot a scan (3-D, 4-D)
        self.peak = {
            d: 1.0 / math.sqrt(float(np.prod(2.0 * math.pi * sigmas[:d] ** 2))) for d in (3, self.dim)
        }
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

    def _cells(self, z: FloatArray) -> npt.NDArray[np.int64]:
        coords = np.floor((z[:, :3] + _OFFSET) / self.size).astype(np.int64)
        # (np.minimum and np.maximum: np.clip costs several times more on arrays this small)
        return np.minimum(np.maximum(coords, 0), MAX_CELL - 2)  # room for row + 2

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
            self.keys, self.coords = self.keys[keep], self.coords[keep]
            self.count, self.sums, self.squares = self.count[keep], self.sums[keep], self.squares[keep]
            self.t_ref, exponent = max(t, self.last_t), 0.0
        return math.exp(exponent)

    def observe(self, t: float, z: FloatArray, counted: BoolArray, period_s: float) -> None:
        """A scan at time t: its plots `z` (M, D), of which `counted` are no established track's."""
        scale = self._scale(t)
        step = t - self.last_t
        timed = period_s > 0 and 0.0 <= step <= _SILENCE_PERIODS * period_s
        self.scans += (step / period_s if timed else 1.0) * scale
        self.last_t = max(self.last_t, t)
        z = z[counted, : self.dim]
        if z.shape[0] < 2:
            return
        coords = self._cells(z)
        keys = pack_cells(coords)
        order = np.argsort(keys, kind="stable")
        z, coords = z[order], coords[order]
        a, b = neighbour_pairs(coords, coords, keys[order])
        a, b = a[a != b], b[a != b]
        if self.splits_objects and a.size:  # a clusterer's split return is one object
            close = np.zeros((z.shape[0], z.shape[0]), dtype=bool)
            near = np.sum(((z[a, :3] - z[b, :3]) / self.sigmas[:3]) ** 2, axis=1) < SPLIT_D2
            close[a[near], b[near]] = True
            keep = first_of_each(close)
            both = keep[a] & keep[b]
            a, b = a[both], b[both]
        if not a.size:
            return
        k = 1.0 + np.bincount(a, minlength=z.shape[0])
        share = np.where(k > 1.0, (k - 1.0) / k, 0.0) * scale
        some = share > 0.0
        self._add(coords[some], share[some], z[some])

    def _add(self, coords: npt.NDArray[np.int64], weight: FloatArray, z: FloatArray) -> None:
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

    def density(self, t: float, z: FloatArray, clutter: float) -> FloatArray | None:
        """The excess plots' density at each plot (per scan and unit of measurement space);
        None where it could add under `NEGLIGIBLE` of the uniform `clutter` density anywhere
        (all the map's excess in one neighbourhood, as narrow as the radar's noise): the map of
        uniform clutter holds a few stray pairs, not worth a lookup every scan."""
        if not self.keys.size or not z.shape[0]:
            return None
        scale = self._scale(t)
        # An upper bound of the rate (the count itself, and ρ ≤ E + √(2E)), in scalars: cheap.
        d = min(self.dim, z.shape[1])
        excess = float(self.count.sum()) / (self.scans + PRIOR_SCANS * scale)
        if (excess + math.sqrt(2.0 * excess)) * self.peak[d] < NEGLIGIBLE * clutter:
            return None
        q, c = neighbour_pairs(self._cells(z), self.coords, self.keys)
        if not q.size:
            return None
        m = z.shape[0]
        w = self.count[c]
        n = np.asarray(np.bincount(q, weights=w, minlength=m), dtype=np.float64)
        if not n.any():
            return None
        # Each cell its own Gaussian (its plots' moments, never narrower than the radar's noise),
        # weighed by its share of the neighbourhood's excess: a cell spread over by one spot holds
        # its part of it, and a drone beside the spot is priced at the spot's tail, not at a
        # Gaussian pooled over both.
        mean = self.sums[c, :d] / w[:, None]
        var = np.maximum(self.squares[c, :d] / w[:, None] - mean**2, self.sigmas[:d] ** 2)
        d2 = np.sum((z[q, :d] - mean) ** 2 / var, axis=1)
        pdf = np.exp(-0.5 * d2) / np.sqrt(np.prod(2.0 * math.pi * var, axis=1))
        mixture = np.bincount(q, weights=w * pdf, minlength=m) / np.maximum(n, 1e-300)
        out = np.zeros(m)
        some = n > 0.0
        out[some] = self._rate(n[some], scale) * mixture[some]
        return out

    def spots(self, t: float) -> int:
        """Places the map now prices as clutter: peak cells (none of their 26 neighbours holds
        more) whose neighbourhood gives at least `SPOT_RATE` excess plots a scan, over the scans
        seen and the prior's (a spot spread over several cells is one place)."""
        if not self.keys.size:
            return 0
        scale = self._scale(t if math.isfinite(t) else self.last_t)
        q, c = neighbour_pairs(self.coords, self.coords, self.keys)
        around = np.bincount(q, weights=self.count[c], minlength=self.keys.size)
        outdone = np.zeros(self.keys.size, dtype=bool)
        outdone[q[self.count[c] > self.count[q]]] = True
        busy = around / (self.scans + PRIOR_SCANS * scale) >= SPOT_RATE
        return int(np.count_nonzero(busy & ~outdone))

    def _rate(self, count: FloatArray, scale: float) -> FloatArray:
        """Plots a scan from neighbourhoods holding `count` (scaled) excess plots: their excess
        per scan at the Poisson lower quantile, over the scans seen and the prior's."""
        excess = gammaincinv(count / scale, LOWER_QUANTILE) / (self.scans / scale + PRIOR_SCANS)
        return plots_per_scan(excess)


def plots_per_scan(excess: FloatArray) -> FloatArray:
    """The Poisson rate ρ whose plots beyond the first a scan average `excess`: ρ − 1 + e^−ρ = E,
    so ρ = 1 + E + W₀(−e^(−1−E)) (Lambert W). A sparse spot's excess understates it (one plot a
    scan in three: E = 0.05, ρ = 0.33); uniform clutter's E is so small that its lower quantile
    is nothing, and stays so."""
    rho = np.real(1.0 + excess + lambertw(-np.exp(-1.0 - excess)))
    # At E → 0 the branch point's rounding: there ρ ≈ √(2E).
    return np.asarray(
        np.where(np.isfinite(rho), rho, np.sqrt(2.0 * np.maximum(excess, 0.0))), dtype=np.float64
    )


def neighbour_pairs(
    query: npt.NDArray[np.int64], coords: npt.NDArray[np.int64], keys: npt.NDArray[np.int64]
) -> tuple[IndexArray, IndexArray]:
    """Pairs (query i, cell j) with cell j in the 3×3×3 cells around query i's cell; `keys` the
    cells' `pack_cells`, sorted (range-major: the cells of three range rows are one run of it)."""
    row = query[:, 0]
    lo = np.searchsorted(keys, (row - 1) * _ROW + _FIRST)  # the first key of row − 1 …
    hi = np.searchsorted(keys, (row + 2) * _ROW + _FIRST)  # … up to row + 2's
    counts = hi - lo
    i = np.repeat(np.arange(query.shape[0]), counts)
    j = np.arange(i.size) + np.repeat(lo - np.cumsum(counts) + counts, counts)
    near = (np.abs(coords[j, 1] - query[i, 1]) <= 1) & (np.abs(coords[j, 2] - query[i, 2]) <= 1)
    return i[near], j[near]


class SiteLocalClutter:
    """The local clutter maps of a site's radars, one each, made at the first scan whose accuracy
    is known."""

    def __init__(self) -> None:
        self.maps: dict[int, LocalClutter] = {}

    def density(
        self, bit: int, model: MeasurementModel, t: float, z: FloatArray, clutter: float, stats: SensorStats
    ) -> FloatArray | None:
        local = self._map(bit, model, stats)
        return None if local is None else local.density(t, z, clutter)

    def observe(
        self,
        bit: int,
        model: MeasurementModel,
        t: float,
        z: FloatArray,
        counted: BoolArray,
        stats: SensorStats,
    ) -> None:
        local = self._map(bit, model, stats)
        if local is not None:
            local.observe(t, z, counted, float(stats.period_s[bit]))

    def spots(self, t: float, bit: int | None = None) -> int:
        """Places priced as clutter now (`LocalClutter.spots`): of one radar, or of all
        (`health.fusion.clutter_spots`)."""
        return sum(local.spots(t) for b, local in self.maps.items() if bit is None or b == bit)

    def _map(self, bit: int, model: MeasurementModel, stats: SensorStats) -> LocalClutter | None:
        local = self.maps.get(bit)
        if local is not None or not is_radar(model):
            return local
        sigma_range, sigma_angle = float(stats.sigma_range[bit]), float(stats.sigma_angle[bit])
        if not (sigma_range > 0 and sigma_angle > 0):  # accuracy not known yet: its first plots
            return None
        sigmas = [sigma_range, sigma_angle, sigma_angle]
        if getattr(model, "range_rate", False):
            sigma_rate = float(stats.sigma_rate[bit])
            sigmas.append(sigma_rate if sigma_rate > 0 else 0.1)
        local = LocalClutter(np.array(sigmas), model.splits_objects)
        self.maps[bit] = local
        return local
