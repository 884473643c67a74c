"""Where false alarms recur: the clutter map that makes new tracks there prove themselves longer."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import MeasurementModel
from cuas_node.fusion.sensor_stats import SensorStats, fed_by, is_radar
from cuas_node.kernel.pose import spherical_to_cartesian

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_RESCALE_AT = 30.0  # fold the time scale into the grid before exp() of it nears float range
_NEIGHBOUR_DI = np.repeat(np.arange(-1, 2), 3)[None, :]
_NEIGHBOUR_DJ = np.tile(np.arange(-1, 2), 3)[None, :]
# Lives are fewer than deaths (only tracks that confirmed): judged over the 5×5 cells around a place.
_WIDE_DI = np.repeat(np.arange(-2, 3), 5)[None, :]
_WIDE_DJ = np.tile(np.arange(-2, 3), 5)[None, :]
_MIN_RING_CELLS = 6  # fewer other cells in view at a range: no background to judge a cell against
_EXCESS_SIGMAS = 3.0  # a cell is hot above its ring's background by this many Poisson sigmas
_OUTLIVE = -math.log(0.1)  # lives spread as an exponential's: this many means outlive 90 % of them


class ClutterMap:
    """Where one radar's false alarms recur: a decaying count of tentative tracks that died
    unconfirmed, on a horizontal log-polar grid around the radar. New tracks born in a hot cell
    need two more hits to confirm, so a flickering reflector stops producing confirmed phantoms,
    while a real target there, which keeps being detected, still confirms a few scans later.

    Nothing in it is a constant of one sensor: it reaches `max_range_m` (the radar's coverage)
    and its cells are `cell_rad` wide in azimuth and as deep, relative to their range (range bins
    grow geometrically by 1 + `cell_rad` from `min_cell_m`), so a cell spans about the same number
    of the sensor's own resolution cells at 5 m as at 10 km.

    A cell is hot when its 3×3 neighbourhood holds `hot_count` deaths (within the half-life) and
    more than its range ring explains: the mean of the ring's other cells in the radar's view
    (`covered`: each column's weight in it, `_view_columns`), by three Poisson sigmas. False
    alarms spread evenly over the coverage, which the track score already prices at the learnt
    clutter density, then heat no cell however dense (counted alone, 50 a scan in a 200 m
    coverage heated every cell within seconds and asked two more hits of every target born
    mid-run). A reflector, or a few, still stands out of its ring, if its tracks die unconfirmed
    (one that confirms before any dies there is never counted). The background is the ring, not
    the neighbouring cells (a test against those let multipath through in `birds-and-clutter`),
    and any profile in range is background (clutter uniform in volume grows with range). Clutter
    that fills a whole ring of the view (a fence line across it) is that ring's background and
    heats nothing there."""

    def __init__(
        self,
        max_range_m: float = 1500.0,
        cell_rad: float = math.radians(3.0),
        min_cell_m: float = 1.0,
        half_life_s: float = 120.0,
        hot_count: float = 3.0,
        origin_en: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.max_range_m = max_range_m
        self.cell_rad = cell_rad
        self.min_cell_m = min_cell_m
        self.r0 = min_cell_m / cell_rad  # inside r0 the cells are min_cell_m deep
        self.log_step = math.log1p(cell_rad)
        self.linear = math.ceil(self.r0 / min_cell_m)
        far = math.log(max(max_range_m, self.r0) / self.r0)
        self.n_range = self.linear + math.ceil(far / self.log_step) + 1
        self.n_az = max(math.ceil(2.0 * math.pi / cell_rad), 3)
        self.decay_rate = math.log(2.0) / half_life_s
        self.hot_count = hot_count
        self.origin = np.array([origin_en[0], origin_en[1]], dtype=np.float64)
        # Each column's weight in the radar's view (`_view_columns`), so that the edge columns of a
        # view that does not end on a column border weigh what they hold (an empty column counted
        # whole lowers the ring's mean: 2 in 42 made 1 % of cells hot in uniform clutter).
        self.covered = np.ones(self.n_az)
        self.grid = np.zeros((self.n_range, self.n_az))
        # Established tracks lost where they were born (`add` with lives): their decaying count and the
        # sum of their lives, per cell, on the same clock as `grid`.
        self.lost = np.zeros((self.n_range, self.n_az))
        self.lives_s = np.zeros((self.n_range, self.n_az))
        self.ring = np.zeros(self.n_range)  # each row's sum over the columns in view
        self.t = -math.inf
        self.t_ref = -math.inf  # the time at which a stored count is its decayed value (`_weight`)

    def _cells(self, enu: FloatArray) -> tuple[IndexArray, IndexArray, BoolArray]:
        east, north = enu[:, 0] - self.origin[0], enu[:, 1] - self.origin[1]
        rho = np.hypot(east, north)
        far = (
            np.floor(np.log(np.maximum(rho, self.r0) / self.r0) / self.log_step).astype(np.intp) + self.linear
        )
        near = np.floor(rho / self.min_cell_m).astype(np.intp)
        i = np.where(rho < self.r0, near, far)
        inside = (rho <= self.max_range_m) & (i < self.n_range)
        return np.minimum(i, self.n_range - 1), self.columns(east, north), inside

    def columns(self, east: FloatArray, north: FloatArray) -> IndexArray:
        """The azimuth column of each horizontal direction (east, north) from the map's origin."""
        j = np.floor((np.arctan2(east, north) + math.pi) / (2.0 * math.pi) * self.n_az).astype(np.intp)
        return np.asarray(j % self.n_az, dtype=np.intp)

    def _weight(self, t: float) -> float:
        """Deaths are stored scaled by exp(rate · (t − t_ref)) and read back divided by it, so that
        time decays the whole grid without touching it every scan; the scale is folded into the
        grid (one multiplication) only when it would grow large."""
        self.t = max(self.t, t)
        if not math.isfinite(self.t_ref):
            self.t_ref = self.t
        exponent = self.decay_rate * (self.t - self.t_ref)
        if exponent > _RESCALE_AT:
            for stored in (self.grid, self.ring, self.lost, self.lives_s):
                stored *= math.exp(-exponent)
            self.t_ref, exponent = self.t, 0.0
        return math.exp(exponent)

    def add(self, enu: FloatArray, t: float, lived_s: FloatArray | None = None) -> None:
        """Deaths at `enu`; with `lived_s`, established tracks lost where they were born and how
        long each lived (NaN: a tentative track's death, no life: `outlive_s`)."""
        if enu.shape[0] == 0:
            return
        weight = self._weight(t)
        i, j, inside = self._cells(enu)
        i, j = i[inside], j[inside]
        np.add.at(self.grid, (i, j), weight)
        np.add.at(self.ring, i[self.covered[j] > 0.0], weight)
        if lived_s is not None:
            lived = lived_s[inside]
            known = np.isfinite(lived)
            np.add.at(self.lost, (i[known], j[known]), weight)
            np.add.at(self.lives_s, (i[known], j[known]), weight * lived[known])

    def outlive_s(self, enu: FloatArray, t: float) -> FloatArray:
        """How long a track born at each point must have lived to confirm: where `hot_count`
        established tracks were lost where they were born within the half-life (over the 5×5 cells
        around it), longer than 90 % of such lives if they spread as an exponential's (`_OUTLIVE`
        times their mean there); 0 elsewhere. The track score counts each scan's false alarms as
        new, and a false object that lasts a second and drifts (a sea spike) scores as a target
        would: only outliving it tells them apart. Per place and fading as the deaths do, so a
        place is judged by its own false objects, lately."""
        out = np.zeros(enu.shape[0])
        if enu.shape[0] == 0 or not self.lost.any():
            return out
        weight = self._weight(t)
        i, j, inside = self._cells(enu)
        ii = np.minimum(np.maximum(i[:, None] + _WIDE_DI, 0), self.n_range - 1)
        jj = (j[:, None] + _WIDE_DJ) % self.n_az
        lost = self.lost[ii, jj].sum(axis=1)
        known = inside & (lost >= self.hot_count * weight)
        out[known] = _OUTLIVE * self.lives_s[ii[known], jj[known]].sum(axis=1) / lost[known]
        return out

    def hot(self, enu: FloatArray, t: float) -> BoolArray:
        """Counted over the 3×3 cells around each point, so a reflector on a cell border is one place;
        only where the radar looks (a track two radars fed may die in the other's view: there the
        other's map judges it, against a ring it sees)."""
        weight = self._weight(t)
        if enu.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        i, j, inside = self._cells(enu)
        ii = np.minimum(np.maximum(i[:, None] + _NEIGHBOUR_DI, 0), self.n_range - 1)
        jj = (j[:, None] + _NEIGHBOUR_DJ) % self.n_az
        own = self.grid[ii, jj]
        total = own.sum(axis=1) / weight
        out: BoolArray = inside & (self.covered[j] > 0.0) & (total >= self.hot_count)
        if out.any():  # the ring is asked only of the few over the count (most births: none)
            k = np.flatnonzero(out)
            background = self._ring_background(ii[k], jj[k], own[k]) / weight
            out[k] = total[k] >= background + _EXCESS_SIGMAS * np.sqrt(background)
        return out

    def _ring_background(self, ii: IndexArray, jj: IndexArray, own: FloatArray) -> FloatArray:
        """What each neighbourhood would hold if its rings were even: per row, the ring's other
        cells' mean times the share of its own cells in view (none where too few are left)."""
        k = ii.shape[0]
        share = self.covered[jj].reshape(k, 3, 3)  # (point, row, column): _NEIGHBOUR_DI is row-major
        n_own = share.sum(axis=2)
        n_others = float(self.covered.sum()) - n_own
        own_in_view = np.where(share > 0.0, own.reshape(k, 3, 3), 0.0).sum(axis=2)
        others = self.ring[ii.reshape(k, 3, 3)[:, :, 0]] - own_in_view
        usable = n_others >= _MIN_RING_CELLS
        mean = np.where(usable, np.maximum(others, 0.0) / np.maximum(n_others, 1.0), 0.0)
        return np.asarray((mean * n_own).sum(axis=1), dtype=np.float64)

    def count(self, enu: FloatArray, t: float) -> FloatArray:
        """The decayed count of deaths in each point's own cell at time t (for inspection and tests)."""
        weight = self._weight(t)
        i, j, inside = self._cells(enu)
        return np.where(inside, self.grid[i, j] / weight, 0.0)


class SiteClutter:
    """The clutter maps of a site, one per radar in its own frame: a radar's false alarms are
    spread over its own range rings (what `ClutterMap` judges a cell against), which are not the
    node's rings when it is mounted away from the node. A death counts in the map of every radar
    that fed the track; a birth is hot where any radar's map is hot there (that radar's clutter
    would feed it too)."""

    def __init__(self) -> None:
        self.maps: dict[int, ClutterMap] = {}

    def fit(self, bit: int, model: MeasurementModel, stats: SensorStats) -> None:
        """A radar's map, made when it first reports: reaching its coverage, cells 3 σ of its angle
        and range accuracy (within 0.5°–6° and at least 0.3 m deep), its columns in view marked."""
        if bit in self.maps or not is_radar(model) or not math.isfinite(stats.sigma_angle[bit]):
            return
        cell = float(np.clip(3.0 * stats.sigma_angle[bit], math.radians(0.5), math.radians(6.0)))
        depth = max(3.0 * float(stats.sigma_range[bit]), 0.3)
        pose, coverage = model.pose, model.coverage
        m = ClutterMap(
            max_range_m=coverage.max_range_m,
            cell_rad=cell,
            min_cell_m=depth,
            origin_en=(float(pose.offset_enu_m[0]), float(pose.offset_enu_m[1])),
        )
        m.covered = _view_columns(m, model)
        self.maps[bit] = m

    def add(
        self,
        enu: FloatArray,
        sensor_masks: npt.NDArray[np.uint64],
        t: float,
        lived_s: FloatArray | None = None,
    ) -> None:
        """Deaths at `enu` of tracks fed by the sensors in `sensor_masks` (a death outside a radar's
        view counts in its map but makes no cell hot there: `ClutterMap.hot`); `lived_s`: how long
        each lived, for the established tracks lost in plain view where they were born
        (`TrackManager.maintain`: a sea spike, a glint, anything that persists a second or two and
        moves a little, like a target), NaN for the others (`ClutterMap.add`)."""
        if not enu.shape[0] or not self.maps:
            return
        fed = fed_by(sensor_masks, list(self.maps))
        for k, m in enumerate(self.maps.values()):
            m.add(enu[fed[:, k]], t, None if lived_s is None else lived_s[fed[:, k]])

    def outlive_s(self, enu: FloatArray, t: float) -> FloatArray:
        """How long tracks born at these places must live to confirm: the longest any radar's map
        asks there (`ClutterMap.outlive_s`)."""
        out = np.zeros(enu.shape[0])
        for m in self.maps.values():
            out = np.maximum(out, m.outlive_s(enu, t))
        return out

    def hot(self, enu: FloatArray, t: float) -> BoolArray:
        out = np.zeros(enu.shape[0], dtype=bool)
        for m in self.maps.values():
            out |= m.hot(enu, t)
        return out


def _view_columns(m: ClutterMap, model: MeasurementModel) -> FloatArray:
    """Each column's weight in a radar's view, relative to the view's fullest column: directions
    spread evenly over its azimuth and elevation (where uniform clutter falls, as the track score
    models it) carried into ENU azimuth. A level radar's columns weigh their share of the view's
    width; a pitched or rolled radar's view spreads wider in ENU azimuth at its upper or lower
    edge, and those columns weigh what reaches them (level directions alone left them out of the
    ring, unjudged: pitched 20°, 9.5 % of births in uniform clutter were hot)."""
    c = model.coverage
    az, el = np.meshgrid(
        np.linspace(-c.fov_az_rad, c.fov_az_rad, 721), np.linspace(-c.fov_el_rad, c.fov_el_rad, 181)
    )
    x, y, z = spherical_to_cartesian(np.ones(az.size), az.ravel(), el.ravel()).T
    # Rotated component by component: a (130 000, 3) @ (3, 3) product starts OpenBLAS's threads,
    # which then spun beside every small product after it (18 % more CPU a scan in the benchmark).
    east, north, up = (row[0] * x + row[1] * y + row[2] * z for row in model.pose.rotation.tolist())
    j = m.columns(east, north)
    level = np.abs(up) < 0.999  # straight up or down has no azimuth
    counts = np.bincount(j[level], minlength=m.n_az).astype(np.float64)
    weights = counts / counts.max() if counts.any() else counts
    return np.asarray(np.where(weights > 1e-3, weights, 0.0), dtype=np.float64)
