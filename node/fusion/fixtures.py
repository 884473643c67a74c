"""Fixtures that come after the survey: places a radar's plots keep coming from, hour after hour.

The survey map (`reflectors`, learnt at installation) holds what stood there then. A truck parked
for the day, a new mast, a crane, a tree grown into the beam come later, and so does every site
whose radar was never surveyed: each gives plots at one place in most minutes, and tracks confirm
on it, die and confirm again (the tracker benchmark's 20 flickering reflectors without a map:
27-35 false confirmed tracks in 30 s), for as long as it stands. A minute of plots cannot tell
such a fixture from a drone hovering there, and nothing here tries to. Time can: a battery
multirotor hovers for minutes, not for `fusion.learn_fixtures_after_s` (45 min by default); a
place whose plots came in nearly every stretch of that long is part of the site.

Each radar's measurement space (range, azimuth, elevation) is cut into cells `CELL_SIGMAS` of its
sigmas a side, and time into `LEARN_EPOCHS` epochs per learning span (scans counted by time where
the radar's period is known: a scanning radar's plots each carry their own time). A 2×2×2 block
of cells is *busy* in an epoch when it holds more plots than the site's clutter there puts in a
block with chance `BUSY_CHANCE` (a block, so that a reflector on the corner of eight cells counts
whole), and so is each of its cells; the clutter there is the radar's learnt uniform share, or
where denser its clutter profile's (its ring bins' median over range, where a bin holds
`MIN_RING_BLOCKS` blocks or more, else its median azimuth sector:
`ClutterProfile.spatial_density`): with 50 false alarms a scan over a 2 km coverage a lone
plot is not, a reflector seen in 5 % of the scans always is. A cell
busy in all but `LEARN_MISSES` of the last `LEARN_EPOCHS` epochs, a whole span, becomes a fixture
(a drone that hovered most of a span, left for a battery swap and came back missed too many),
and stays one while busy in `KEEP_SHARE` of them (one bad stretch does not unlearn it; a truck
that left is forgotten about a third of a span later). Each peak of the fixture cells' plots, with
the fixture cells around it that hold its tails (`fixture_peaks`), is one spot, a Gaussian of the
plots they held until learnt, at their rate per scan (frozen then: a drone that hovers beside it
later must not widen it and so hide itself), which the track score counts as clutter as it
counts the survey's (`SiteReflectors.density`). Azimuth cells do not wrap: a
reflector astern of an all-round radar may be two spots, each at its share. A cell that is not
a fixture is kept only while it can still become one, so memory stays with the few places plots
recur (uniform clutter: a percent or two of the cells in view at most). What was learnt survives
a clock step (the engine's successor) but not a restart.

Every plot counts, those that established tracks took included: a flickering reflector is
tracked most of the time (that is the false track), so leaving out tracked plots would leave
it out; the plots the survey map explains do not (counted twice, they would double its price).
The price is the one any long stare pays: a drone hovering on one spot for the whole span (a
tethered one), or a road where cars pass every minute, becomes site; a drone crossing a learnt
spot is delayed as near a surveyed reflector (docs/calibration.md). `0` turns learning off. An
epoch's plots are counted at its end, in one step (at 60 false alarms a scan and 20 Hz, about
50 ms once every 90 s; at 500, a third of a second).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from cuas_node.fusion.fixture_peaks import around_peaks
from cuas_node.fusion.measurement_models import MeasurementModel
from cuas_node.fusion.reflectors import SiteReflectors
from cuas_node.fusion.sensor_stats import SensorStats, is_radar
from cuas_node.fusion.tails import MAX_MEAN, poisson_isf

if TYPE_CHECKING:  # (the profile's module builds on the local map's, which packs cells as here)
    from cuas_node.fusion.clutter_profile import SiteClutterProfile

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
# At each of some places (N, 3), the false alarms a scan per unit of range × azimuth × elevation
# that a radar's clutter profile finds there; None before it has any
# (`SiteFixtures.clutter_at`, `ClutterProfile.spatial_density`).
ProfileAt = Callable[[FloatArray], FloatArray | None]

CELL_SIGMAS = 3.0  # a cell is this many of the radar's sigmas wide in range and in each angle
LEARN_EPOCHS = 30  # epochs in a learning span: an epoch is `learn_fixtures_after_s` / this
LEARN_MISSES = 1  # a cell becomes a fixture busy in all but this many of the last LEARN_EPOCHS
KEEP_SHARE = 0.7  # and stays one while busy in at least this share of them
BUSY_CHANCE = 0.01  # busy: more plots in an epoch than the site's clutter gives a block with this chance
MIN_RING_BLOCKS = 4.0  # the profile is a place's reference where its ring bin holds this many blocks
# (a smaller one by its median azimuth sector, where it has three or more)
_MIN_SCANS = 3  # an epoch of fewer scans (the radar silent) says nothing of presence: skipped
_SILENCE_PERIODS = 30.0  # a gap longer than this many scan periods is a silence, not empty scans
_BITS = 21  # per packed cell coordinate
MAX_CELL = (1 << _BITS) - 3  # the largest cell coordinate `pack_cells` takes
_BLOCK = np.array([(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.int64)


class FixtureLearner:
    """One radar's fixture cells and the spots learnt from them (`spots`, None until one is)."""

    def __init__(self, sigmas: tuple[float, float], dim: int, span_s: float) -> None:
        sigma_range, sigma_angle = sigmas
        self.size = CELL_SIGMAS * np.array([sigma_range, sigma_angle, sigma_angle])
        # The least scatter of a spot's plots: the radar's own noise.
        self.variance = np.array([sigma_range, sigma_angle, sigma_angle]) ** 2
        self.dim = dim  # 4: the spot has a range-rate row too (0, `_learn`); only positions are counted
        self.block_volume = float(np.prod(self.size)) * _BLOCK.shape[0]
        self.epoch_s = span_s / LEARN_EPOCHS
        self.epoch_end = math.nan
        self.epoch = 0
        self._pending: list[FloatArray] = []
        self._epoch_scans = 0.0
        self._last_t = -math.inf
        self.keys = np.zeros(0, dtype=np.int64)  # sorted
        self.busy = np.zeros(0, dtype=np.uint64)  # bit k: busy k epochs ago
        self.fixed = np.zeros(0, dtype=bool)  # a fixture (until it is busy in under KEEP_SHARE)
        self.first = np.zeros(0, dtype=np.int64)  # the epoch it was first busy
        self.scans_seen = np.zeros(0)  # the scans its plots were counted over (till it was learnt)
        self.count = np.zeros(0)
        self.sums = np.zeros((0, 3))  # of the plots' positions (range, azimuth, elevation)
        self.squares = np.zeros((0, 3))
        self.rate_sigma = 0.1  # m/s, the radar's range-rate sigma once a scan says
        self.spots: SiteReflectors | None = None

    def observe(
        self,
        t: float,
        z: FloatArray,
        uniform: float,
        period_s: float,
        rate_sigma: float = math.nan,
        profile: ProfileAt | None = None,
    ) -> None:
        """A scan's plots at time t (a scanning radar's plot: a partial scan, counted by time);
        `uniform`: the radar's uniform false alarms a scan per unit of range × azimuth ×
        elevation, and `profile` its clutter profile's where that is denser (asked once an epoch):
        what a place's plots are weighed against (`_busy`); `rate_sigma`: the radar's range-rate
        sigma (`SensorStats.sigma_rate`), if it measures it."""
        if rate_sigma > 0:
            self.rate_sigma = rate_sigma
        if not math.isfinite(self.epoch_end):
            self.epoch_end = t + self.epoch_s
        if t >= self.epoch_end:  # (after a silence the next epoch starts now: silent ones count for nothing)
            self._fold(uniform, profile)
            behind = t >= self.epoch_end + self.epoch_s
            self.epoch_end = t + self.epoch_s if behind else self.epoch_end + self.epoch_s
        if t > self._last_t:
            # Scans by time where the period is known (a sweep's plots, empty frames not sent).
            step = t - self._last_t if math.isfinite(self._last_t) else math.inf
            timed = period_s > 0 and step <= _SILENCE_PERIODS * period_s
            self._epoch_scans += step / period_s if timed else 1.0
            self._last_t = t
        if z.shape[0]:
            self._pending.append(z[:, :3])

    def restart(self) -> None:
        """The clock stepped back: the open epoch's plots and times go, what was learnt stays."""
        self.epoch_end, self._last_t = math.nan, -math.inf
        self._pending, self._epoch_scans = [], 0.0

    def _cells(self, z: FloatArray) -> npt.NDArray[np.int64]:
        coords = np.floor((z[:, :3] + np.array([0.0, math.pi, math.pi / 2])) / self.size).astype(np.int64)
        return pack_cells(np.clip(coords, 0, MAX_CELL))

    def _busy(
        self, keys: npt.NDArray[np.int64], counts: FloatArray, site: FloatArray, uniform: float, scans: float
    ) -> npt.NDArray[np.int64]:
        """The cells busy this epoch: every cell of each 2×2×2 block of cells holding more plots
        than the site's clutter there puts in a block with chance `BUSY_CHANCE` (over a block, so
        that a reflector on a corner of four or eight cells counts whole, not an eighth in each).
        The site's clutter is the profile's density at its plots (`site`: per cell, summed over
        its plots), or the `uniform` share where that is more."""
        coords = unpack_cells(keys)
        anchors = np.unique(pack_cells((coords[:, None, :] - _BLOCK[None]).reshape(-1, 3)))
        corner = unpack_cells(anchors)
        total, density = np.zeros(anchors.size), np.zeros(anchors.size)
        for offset in _BLOCK:
            wanted = pack_cells(corner + offset)
            at = np.searchsorted(keys, wanted)
            found = at < keys.size
            found[found] = keys[at[found]] == wanted[found]
            total[found] += counts[at[found]]
            density[found] += site[at[found]]
        # (every block holds a plot: its anchors are the corners of cells that do)
        expected = np.minimum(np.maximum(density / total, uniform) * self.block_volume * scans, MAX_MEAN)
        busy = corner[total > poisson_isf(BUSY_CHANCE / _BLOCK.shape[0], expected)]
        return np.unique(pack_cells((busy[:, None, :] + _BLOCK[None]).reshape(-1, 3)))

    def _fold(self, uniform: float, profile: ProfileAt | None) -> None:
        """Close an epoch: count its plots into the cells, note which were busy, forget the cells
        that stopped being, and learn the spots again."""
        pending, scans = self._pending, self._epoch_scans
        self._pending, self._epoch_scans = [], 0.0
        if scans < _MIN_SCANS:
            return
        self.epoch += 1
        z = np.concatenate(pending) if pending else np.zeros((0, 3))
        keys, inverse, plots = np.unique(self._cells(z), return_inverse=True, return_counts=True)
        counts = plots.astype(np.float64)
        sums, squares, site = np.zeros((keys.size, 3)), np.zeros((keys.size, 3)), np.zeros(keys.size)
        np.add.at(sums, inverse, z)
        np.add.at(squares, inverse, z**2)
        profiled = None if profile is None or not z.shape[0] else profile(z)
        if profiled is not None:
            np.add.at(site, inverse, profiled)
        busy_keys = self._busy(keys, counts, site, uniform, scans)
        extra = np.setdiff1d(busy_keys, keys, assume_unique=True)  # busy cells without a plot of their own
        if extra.size:
            keys = np.concatenate([keys, extra])
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            pad = np.zeros((extra.size, 3))
            counts = np.concatenate([counts, np.zeros(extra.size)])[order]
            sums, squares = (np.concatenate([a, pad])[order] for a in (sums, squares))
        busy = np.isin(keys, busy_keys, assume_unique=True)
        at = np.searchsorted(self.keys, keys)
        known = at < self.keys.size
        known[known] = self.keys[at[known]] == keys[known]
        self.busy <<= np.uint64(1)
        old = at[known]
        self.busy[old] |= busy[known].astype(np.uint64)
        # A fixture's spot is what it was learnt from: a drone hovering beside it later must not
        # widen it, nor raise its rate, and so hide itself.
        grow = ~self.fixed[old]
        cells, rows = old[grow], np.flatnonzero(known)[grow]
        self.count[cells] += counts[rows]
        self.sums[cells] += sums[rows]
        self.squares[cells] += squares[rows]
        self.scans_seen[~self.fixed] += scans
        new = ~known & busy
        self._insert(keys[new], counts[new], sums[new], squares[new], np.full(new.sum(), scans))
        self._forget()
        self.spots = self._learn()  # (once an epoch: 30-130 ms at 2000 fixture cells)

    def _insert(self, keys: npt.NDArray[np.int64], *moments: FloatArray) -> None:
        counts, sums, squares, scans = moments
        at = np.searchsorted(self.keys, keys)
        self.keys = np.insert(self.keys, at, keys)
        self.busy = np.insert(self.busy, at, np.uint64(1))
        self.fixed = np.insert(self.fixed, at, False)
        self.first = np.insert(self.first, at, self.epoch)
        self.scans_seen = np.insert(self.scans_seen, at, scans)
        self.count = np.insert(self.count, at, counts)
        self.sums = np.insert(self.sums, at, sums, axis=0)
        self.squares = np.insert(self.squares, at, squares, axis=0)

    def _window(self) -> tuple[IndexArray, IndexArray]:
        """Each cell's recent epochs (the last `LEARN_EPOCHS`, or its age) and busy ones among them."""
        window = np.minimum(self.epoch - self.first + 1, LEARN_EPOCHS)
        mask = (np.uint64(1) << window.astype(np.uint64)) - np.uint64(1)
        return window, np.bitwise_count(self.busy & mask).astype(np.intp)

    def _forget(self) -> None:
        """Cells become fixtures busy in all but `LEARN_MISSES` of a whole span's epochs, and stay
        ones down to `KEEP_SHARE` (a fixture that flickers through one bad stretch is not
        relearnt from nothing); a drone that hovered 36 minutes, left for ten and came back has
        missed too many. A cell that is not a fixture is kept only while it can still become one."""
        window, busy = self._window()
        misses = window - busy
        self.fixed |= (window >= LEARN_EPOCHS) & (misses <= LEARN_MISSES)
        keep = np.where(self.fixed, busy >= KEEP_SHARE * window, misses <= LEARN_MISSES)
        self.fixed &= keep
        if keep.all():
            return
        for name in ("keys", "busy", "fixed", "first", "scans_seen", "count", "sums", "squares"):
            setattr(self, name, getattr(self, name)[keep])

    def _learn(self) -> SiteReflectors | None:
        """A spot per peak of the fixture cells' plots: the busiest cell and the fixture cells
        around it (3×3×3) that hold its tails, then the busiest cell left, and so on
        (`fixture_peaks`; a busy block makes all its cells fixtures, so neighbouring reflectors'
        cells touch: joined, two reflectors 4 cells apart were one spot 6 sigmas wide). Its plots
        in those cells give its centre; its scatter is theirs but never under the radar's own
        (the cells cut the tails off, and a fixed reflector scatters by the measurement noise, a
        swaying one by more); its rate is their plots per scan over the share of that Gaussian
        the cells hold."""
        cells = np.flatnonzero(self.fixed)
        if not cells.size:
            return None
        coords = unpack_cells(self.keys[cells])
        low = coords * self.size - np.array([0.0, math.pi, math.pi / 2])
        plots = np.maximum(self.count[cells], 1.0)[:, None]
        centroid = self.sums[cells] / plots
        inside = np.where(self.count[cells, None] > 0, (centroid - low) / self.size, 0.5)
        spread = np.maximum(self.squares[cells] / plots - centroid**2, 0.0) / self.size**2
        peak = np.asarray(
            around_peaks(
                coords.tolist(),
                self.count[cells].tolist(),
                inside.tolist(),
                spread.tolist(),
                1.0 / CELL_SIGMAS,
            ),
            dtype=np.intp,
        )
        # A fixture's plots come in every epoch it is busy: a peak holding fewer than that is
        # clutter in a cell another's busy block made a fixture (a band's plots beside a mast).
        held_plots = np.zeros(cells.size)
        np.add.at(held_plots, peak[peak >= 0], self.count[cells[peak >= 0]])
        peak[held_plots[np.maximum(peak, 0)] < LEARN_EPOCHS - LEARN_MISSES] = -1
        cells, low = cells[peak >= 0], low[peak >= 0]
        if not cells.size:
            return None
        spot_of = np.unique(peak[peak >= 0], return_inverse=True)[1]
        n_spots = int(spot_of.max()) + 1
        n, sums, squares = np.zeros(n_spots), np.zeros((n_spots, 3)), np.zeros((n_spots, 3))
        for total, part in ((n, self.count), (sums, self.sums), (squares, self.squares)):
            np.add.at(total, spot_of, part[cells])
        mean = sums / n[:, None]  # (a spot's peak holds plots)
        spread = np.maximum(squares / n[:, None] - mean**2, self.variance)
        # Each cell's share of its spot's Gaussian: the product of its three intervals' masses.
        sd = np.sqrt(spread[spot_of])
        share = np.prod(
            ndtr((low + self.size - mean[spot_of]) / sd) - ndtr((low - mean[spot_of]) / sd), axis=1
        )
        held, plots = np.zeros(n_spots), np.zeros(n_spots)
        np.add.at(held, spot_of, share)
        np.add.at(plots, spot_of, self.count[cells] / np.maximum(self.scans_seen[cells], 1.0))
        rate = np.minimum(plots / np.maximum(held, 0.05), 1.0)
        if self.dim == 4:  # a fixture stands still: range-rate 0, within twice the radar's sigma (sway);
            # its cells' plots cannot say (they are not binned in range-rate, and clutter of every
            # range-rate falls in them: measured, they spread 2-5 m/s for a 0.1 m/s radar)
            mean = np.column_stack([mean, np.zeros(n_spots)])
            spread = np.column_stack([spread, np.full(n_spots, (2.0 * self.rate_sigma) ** 2)])
        cov = np.zeros((n_spots, self.dim, self.dim))
        cov[:, np.arange(self.dim), np.arange(self.dim)] = spread
        return SiteReflectors(mean, cov, rate)


def pack_cells(coords: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Cell coordinates (N, 3), each in [-1, 2^_BITS - 2], as one sortable int64 each."""
    c = coords + 1
    return np.asarray((c[:, 0] << (2 * _BITS)) | (c[:, 1] << _BITS) | c[:, 2], dtype=np.int64)


def unpack_cells(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    mask = (1 << _BITS) - 1
    return np.stack([((keys >> s) & mask) - 1 for s in (2 * _BITS, _BITS, 0)], axis=1)


def unexplained_by_site(density: FloatArray | None, clutter: float, m: int) -> npt.NDArray[np.bool_]:
    """The plots the site's known places (the survey map, learnt fixtures) do not explain: λ there
    under twice the uniform `clutter` (None: nothing known, all). A plot on a known place is
    priced by it; learnt or counted again there, it would be priced twice."""
    return np.ones(m, dtype=bool) if density is None else np.asarray(density < 2.0 * clutter)


class SiteFixtures:
    """The fixture learners of a site's radars (one each, made at its first scan with known
    accuracy), and the clutter density their spots and the survey map add at each plot."""

    def __init__(self, learn_after_s: float) -> None:
        self.learn_after_s = learn_after_s
        self.learners: dict[int, FixtureLearner] = {}

    def clutter_at(
        self,
        bit: int,
        model: MeasurementModel,
        t: float,
        z: FloatArray,
        clutter: float,
        stats: SensorStats,
        profile: SiteClutterProfile,
    ) -> FloatArray | None:
        """λ at each plot of a scan: the uniform `clutter`, plus the survey map's reflectors and
        the fixtures learnt of this radar; None where there is neither (uniform alone). The scan
        is learnt from, but for the plots the survey map already explains (more than the uniform
        clutter does there): a surveyed reflector learnt again would count twice. A place is
        weighed against the false alarms the site puts there: the radar's uniform share, or
        where its clutter `profile` says denser (`ClutterProfile.spatial_density`), that. Against
        the uniform share alone, clutter confined to a band of elevation (the profile prices it,
        and the uniform share fell to 0.17 of 3 a scan) was busy everywhere in the band: a soak
        learnt ~300 spots of random clutter in 45 minutes, each pricing its place at tens of
        times the clutter there."""
        m = z.shape[0]
        survey = getattr(model, "reflectors", None)
        density = clutter + survey.density(z) if survey is not None and m else None
        learner = self._learner(bit, model, stats)
        if learner is not None:
            unexplained = z[unexplained_by_site(density, clutter, m)]
            uniform = float(stats.false_alarms[bit]) / model.coverage.volume()  # (its share, as learnt)
            # A ring bin (all azimuths) of a few blocks cannot tell clutter along it from a
            # reflector in it: on a radar ±5° wide, three reflectors in neighbouring range bins at
            # 300 m were each other's reference, and none was learnt (an outside test, helper-104;
            # at ±12°, ring bins of 2.6 blocks there, the faintest): there its median azimuth
            # sector, or with under three sectors the uniform share (`spatial_density`).
            smallest = MIN_RING_BLOCKS * learner.block_volume
            learner.observe(
                t,
                unexplained,
                uniform,
                float(stats.period_s[bit]),
                float(stats.sigma_rate[bit]),
                lambda at: profile.spatial_density(bit, at, smallest),
            )
            if learner.spots is not None and m:
                density = (np.full(m, clutter) if density is None else density) + learner.spots.density(z)
        return density

    def restarted(self) -> SiteFixtures:
        """These learners on a clock that stepped back: what they learnt kept, their epochs
        restarting at the next scan (the plots of the open epoch are dropped with its times)."""
        for learner in self.learners.values():
            learner.restart()
        return self

    def learnt(self, bit: int | None = None) -> int:
        """Fixture spots learnt so far: of one radar, or of all (`health.fusion.fixtures_learnt`)."""
        chosen = [f for b, f in self.learners.items() if bit is None or b == bit]
        return sum(0 if f.spots is None else len(f.spots) for f in chosen)

    def _learner(self, bit: int, model: MeasurementModel, stats: SensorStats) -> FixtureLearner | None:
        learner = self.learners.get(bit)
        if learner is not None:
            # A range-rate radar whose first plots lacked it (a frame's parts, the smaller first):
            # its spots stand still in range-rate too, or a moving drone on one is priced as it.
            if getattr(model, "range_rate", False) and learner.dim < 4:
                learner.dim = 4
                learner.spots = learner._learn()  # (its spots, if any yet, 4-D now)
            return learner
        if self.learn_after_s <= 0 or not is_radar(model):
            return None
        sigma_range, sigma_angle = float(stats.sigma_range[bit]), float(stats.sigma_angle[bit])
        if not (sigma_range > 0 and sigma_angle > 0):  # accuracy not known yet: its first plots
            return None
        dim = 4 if getattr(model, "range_rate", False) else 3
        learner = FixtureLearner((sigma_range, sigma_angle), dim, self.learn_after_s)
        self.learners[bit] = learner
        return learner
