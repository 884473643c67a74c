"""Where a radar's false alarms fall in range and elevation, standing or moving: its clutter
profile.

The uniform density λ prices a radar's false alarms as spread evenly over its coverage. A real
radar's are not: the ground near it returns far more than the sky at its maximum range, and
ground clutter stands still. An outside generator's ground clutter (40 of 45 false alarms a scan
below 3° elevation, density ~1/r² from 100 m, 1 Hz) is at 300 m a hundred times the uniform
density there, and 26-34 tracks a run of four minutes confirmed on it. The local map
(`local_clutter`) sees only places whose plots come several to a neighbourhood in one scan;
ground clutter at a few hundred metres is sparse in any one neighbourhood yet dense along its
whole ring. The profile pools every azimuth, so it learns a ring within tens of scans: bins as
deep in range as `CELL_SIGMAS` of the radar's resolution there (max(σ_range, r·σ_angle): the
same number of resolution cells near and far) and `CELL_SIGMAS` of its angle sigma in elevation;
a range-rate radar's plots are split into standing (within `CELL_SIGMAS` of its range-rate sigma
of 0: the ground, buildings, trees) and moving (the rest of its Doppler span: rain, birds,
noise), so a drone moving radially through ground clutter is not priced at the ground's density
(a hovering one is: the radar cannot tell it from the ground there). The same bins are counted
per azimuth sector (`SECTOR_RAD`): what fills only part of the azimuths (the sea on one side of
a coastal mast, a rain band, a town) is diluted in the ring's bin by the clean side, and where a
sector's own evidence, at the same low quantile over its share of the volume, is denser than the
ring's it prices there (an outside user's sea over half the azimuths and a moving rain band:
16-26 % fewer false tracks; the clean side keeps the ring's price). A young track's third plot
or later counts in the ring only (`observe`'s `sectored`): a hovering drone's plots, one a scan
in one place, priced its own sector before its track confirmed. Sector edges are fixed:
clutter astride one is split between two. At 1 Hz a sector gathers too few plots within the
half-life to move the price much (a one-sided ground band: 0.33 of its truth against the ring's
0.20 at 400 m), and the summary names a sector only where its low quantile is half as dense
again as its ring's mean (a band over half the azimuths at 1 Hz is not named).

Every scan, each plot that no established track gated and that the site's known places do not
price adds one to its bin if it lies inside the coverage (a clusterer's plots within each
other's noise, `splits_objects`, once: one object's point cloud, as the local map counts it). A
target's own plots before its track is established count too: a TI board's recording of a
stationary object at 0.6 m confirms its track a frame later (leaving out the plots a track took
as its third or later fixed that, and let 2-4 more false tracks a run through on ground
clutter). At a plot, the bin's count at its Poisson `LOWER_QUANTILE` (a young drone's few plots
in a bin say nothing) over the scans seen plus `PRIOR_SCANS` (as the local map's: with one, a
swarm's first plots read as a clutter rate in their bin, and `swarm-20` got an ID switch and 2 %
more GOSPA), over the bin's volume inside the coverage, is the density of false alarms there;
where it is above the uniform λ it replaces it. Counts decay with a half-life of `HALF_LIFE_S`,
as the local map's do. Where the profile is flat (uniform clutter) its lower quantile stays
below λ, but where the learnt λ dips (coarse bins: a few % of plots priced above it, the mean
price within 0.3 %). The local map's price is added on top: its spots are the profile's too, but
smeared over a whole ring, and subtracting that from a tree's excess (tried) priced trees lower
and kept their tracks alive longer (an outside test's trees, GOSPA +23 % on one seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from cuas_node.fusion.local_clutter import HALF_LIFE_S, LOWER_QUANTILE, PRIOR_SCANS, SPLIT_D2, PerRadar
from cuas_node.fusion.measurement_models import Coverage, MeasurementModel
from cuas_node.fusion.sensor_stats import SensorStats
from cuas_node.fusion.tracks import first_of_each
from cuas_node.kernel.pose import wrap

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

CELL_SIGMAS = 3.0  # a bin is this many of the radar's sigmas deep (range: its resolution there)
MAX_BINS = 1 << 18  # a profile finer than this (a radar of a hundredth of a degree) has wider bins
SECTOR_RAD = math.radians(15.0)  # azimuth sectors about this wide (sea, rain, a built-up side)
_SECTOR_NAMED = 1.5  # the summary names a sector this much denser (low quantile) than its ring
_SILENCE_PERIODS = 30.0  # a gap longer than this many scan periods counts as one scan, not many
_FOLD_AT = math.log(2.0)  # the time scale is folded into the counts once a half-life
_Z = float(-ndtri(LOWER_QUANTILE))  # the normal quantile of `LOWER_QUANTILE`


class ClutterProfile:
    """One radar's false alarms binned by range, elevation and (D = 4) standing or moving, pooled
    over azimuth and per azimuth sector (`n_sectors`: fewer, or one, where the bins would pass
    `MAX_BINS`; narrower than 3 angle sigmas where rounding makes them so): `observe` a scan's
    unexplained plots, `density` at plots."""

    def __init__(self, sigmas: FloatArray, coverage: Coverage, splits_objects: bool = False) -> None:
        self.dim = sigmas.size  # (D,): range, angle, angle[, range-rate] (`SensorStats.radar_sigmas`)
        self.coverage = coverage
        self.sigmas = sigmas[:3]  # range, angle, angle: a split return's noise
        self.splits_objects = splits_objects
        sigma_range, sigma_angle = float(sigmas[0]), float(sigmas[1])
        # Range bins: CELL_SIGMAS · σ_range deep up to the knee where r·σ_angle takes over, then
        # CELL_SIGMAS · r·σ_angle (equal steps of ln r): u(r) is the bin coordinate, continuous.
        self.knee = sigma_range / sigma_angle
        self.standing = CELL_SIGMAS * float(sigmas[3]) if self.dim >= 4 else math.inf  # |range-rate| under
        kinds = 2 if self.dim >= 4 else 1
        widen = 1.0
        while True:
            self.depth = widen * CELL_SIGMAS * sigma_range
            self.log_step = widen * CELL_SIGMAS * sigma_angle
            self.el_size = widen * CELL_SIGMAS * sigma_angle
            n_range = int(self._range_u(np.array([coverage.max_range_m]))[0]) + 1
            n_el = math.ceil(2.0 * min(coverage.fov_el_rad, math.pi / 2) / self.el_size)
            if n_range * n_el * kinds <= MAX_BINS:
                break
            widen *= 2.0
        self.counts = np.zeros((n_range, n_el, kinds))
        # The same counts per azimuth sector: clutter that fills part of the azimuths (the sea on
        # one side, a rain band, a town) is denser there than pooled over all of them.
        az_span = 2.0 * min(coverage.fov_az_rad, math.pi)
        sectors = round(az_span / max(SECTOR_RAD, CELL_SIGMAS * sigma_angle * widen))
        self.n_sectors = max(1, min(sectors, MAX_BINS // self.counts.size))
        self.sector_rad = az_span / self.n_sectors
        self.sector_counts = np.zeros((self.n_sectors, self.counts.size))
        self._last: tuple[FloatArray, IndexArray, IndexArray, IndexArray] | None = None  # (`_cut`)
        u = np.arange(n_range + 1, dtype=np.float64)
        edges = np.clip(self._range_at(u), coverage.min_range_m, coverage.max_range_m)
        el = np.minimum(-coverage.fov_el_rad + self.el_size * np.arange(n_el + 1), coverage.fov_el_rad)
        # Each bin's measurement-space volume inside the coverage (range × azimuth × elevation);
        # a bin wholly outside (below the minimum range) its full volume, so that none has none
        # (plots beyond the coverage are not counted, `observe`: such a bin stays empty).
        full = (self._range_at(u[1:]) - self._range_at(u[:-1]))[:, None] * self.el_size
        inside = np.diff(edges)[:, None] * np.diff(el)[None, :]
        area = np.where(inside > 0, inside, full)
        self.volume = area * 2.0 * min(coverage.fov_az_rad, math.pi)
        self.decay = math.log(2.0) / HALF_LIFE_S
        self.scans = 0.0  # scans seen (scaled)
        self.t_ref = math.nan
        self.last_t = -math.inf

    def _range_u(self, r: FloatArray) -> FloatArray:
        r = np.maximum(r, 0.0)
        below = r / self.depth
        above = self.knee / self.depth + np.log(np.maximum(r, self.knee) / self.knee) / self.log_step
        return np.asarray(np.where(r <= self.knee, below, above), dtype=np.float64)

    def _range_at(self, u: FloatArray) -> FloatArray:
        u_knee = self.knee / self.depth
        return np.asarray(
            np.where(u <= u_knee, u * self.depth, self.knee * np.exp((u - u_knee) * self.log_step)),
            dtype=np.float64,
        )

    def _sector(self, z: FloatArray) -> IndexArray:
        """Each plot's azimuth sector (a row of `sector_counts`), of equal widths over the fov."""
        k = ((wrap(z[:, 1]) + min(self.coverage.fov_az_rad, math.pi)) / self.sector_rad).astype(np.intp)
        return np.asarray(np.clip(k, 0, self.n_sectors - 1), dtype=np.intp)

    def _cell(self, z: FloatArray) -> IndexArray:
        """Each plot's (range, elevation) cell as one index into `volume`."""
        n_range, n_el, _ = self.counts.shape
        i = np.minimum(self._range_u(z[:, 0]).astype(np.intp), n_range - 1)
        j = ((z[:, 2] + self.coverage.fov_el_rad) / self.el_size).astype(np.intp)  # (towards 0: clipped)
        return np.asarray(i * n_el + np.minimum(np.maximum(j, 0), n_el - 1), dtype=np.intp)

    def _bins(self, z: FloatArray) -> tuple[IndexArray, IndexArray]:
        """Each plot's cell (`_cell`), and its bin (that, and standing or moving) as one index
        into `counts`."""
        cell = self._cell(z)
        if self.counts.shape[2] == 1:
            return cell, cell
        return cell, 2 * cell + (np.abs(z[:, 3]) >= self.standing)

    def _cut(self, z: FloatArray) -> tuple[IndexArray, IndexArray, IndexArray]:
        """The plots' cells and bins (`_bins`) and sectors, once a scan: `density` and `observe`
        are given the same scan's plots (the array itself, held here until the next scan's)."""
        if self._last is None or self._last[0] is not z:
            cell, where = self._bins(z)
            self._last = (z, cell, where, self._sector(z))
        return self._last[1], self._last[2], self._last[3]

    def _scale(self, t: float) -> float:
        """Counts are stored scaled by exp(decay · (t − t_ref)) and read back divided by it, so
        that time decays them without touching them every scan (as the local map's)."""
        if not math.isfinite(self.t_ref):
            self.t_ref = t
        exponent = self.decay * (max(t, self.last_t) - self.t_ref)
        if exponent > _FOLD_AT:
            factor = math.exp(-exponent)
            self.counts *= factor
            self.sector_counts *= factor
            self.scans *= factor
            self.t_ref, exponent = max(t, self.last_t), 0.0
        return math.exp(exponent)

    def observe(
        self, t: float, z: FloatArray, counted: BoolArray, period_s: float, sectored: BoolArray | None = None
    ) -> None:
        """A scan at time t: its plots `z` (M, D), of which `counted` are false alarms as far as
        the tracks and the site's known places tell, and of those `sectored` (default all) count
        in their azimuth sector too. A scan earlier than the last adds no time."""
        scale = self._scale(t)
        step = t - self.last_t
        timed = period_s > 0 and step <= _SILENCE_PERIODS * period_s
        self.scans += (0.0 if step < 0 else step / period_s if timed else 1.0) * scale
        self.last_t = max(self.last_t, t)
        # Only plots inside the coverage: beyond it a bin's volume is not known (an edge bin
        # would take them into the sliver of it inside, and price its edge as clutter).
        rows = np.flatnonzero(counted & self.coverage.sees(z[:, 0], z[:, 1], z[:, 2]))
        if rows.size > 1 and self.splits_objects:  # a clusterer's split return is one object
            apart: FloatArray = z[rows, None, :3] - z[None, rows, :3]
            apart[:, :, 1] = wrap(apart[:, :, 1])
            rows = rows[first_of_each(np.sum((apart / self.sigmas) ** 2, axis=2) < SPLIT_D2)]
        if rows.size:
            _, where, sector = self._cut(z)
            where, sector = where[rows], sector[rows]
            np.add.at(self.counts.reshape(-1), where, scale)  # (a view)
            if self.n_sectors > 1:
                own = slice(None) if sectored is None else sectored[rows]
                np.add.at(self.sector_counts, (sector[own], where[own]), scale)

    def density(self, t: float, z: FloatArray, doppler_span: float) -> FloatArray | None:
        """At each plot, the false alarms' density in its bin per scan and unit of measurement
        space (range-rate too for D = 4, a moving bin spread over the rest of `doppler_span`, the
        radar's false alarms' span: `SensorStats.radial_span`); None before a scan was seen."""
        if not (self.scans > 0 and z.shape[0]):
            return None
        scale = self._scale(t)
        cell, where, sectors = self._cut(z)
        volume = self.volume.reshape(-1)[cell]
        if self.counts.shape[2] == 2:
            moving = max(doppler_span - 2.0 * self.standing, self.standing)
            volume = volume * np.where(where & 1, moving, 2.0 * self.standing)
        count = _lower(self.counts.reshape(-1)[where] / scale)
        if self.n_sectors > 1:  # where a sector's own evidence says denser than the ring's
            sector = self.n_sectors * _lower(self.sector_counts[sectors, where] / scale)
            count = np.maximum(count, sector)
        return count / ((self.scans / scale + PRIOR_SCANS) * volume)

    def spatial_density(self, at: FloatArray, smallest: float = 0.0) -> FloatArray | None:
        """At each place (N, 3: range, azimuth, elevation), the false alarms per scan and unit of
        range × azimuth × elevation of its ring bin, standing and moving together: what the
        fixture learner weighs a place's plots against (it bins positions only); None before a
        scan. Not `density`'s price, for three reasons. The mean rate, not its low quantile,
        which guards a young drone's plots from pricing themselves: at the few plots a bin near
        the radar holds, it read band clutter there at a third of its rate, and every block
        there looked busy (nor the prior scans: at 1 Hz they read it at 0.8). The ring, not a
        sector: a faint reflector's plots, which no track takes, were most of its sector's bin
        where clutter is sparse (a tree in 10 % of the scans was learnt a span late). And the
        median of the bin and its neighbours in range: a reflector is in one, a band of
        elevation or the ground's 1/r² in all three, and a ring of a few of the learner's blocks
        holds a reflector at a good share of its rate (on the profile alone, ±10°: a 10 %
        reflector went unlearnt). Where the place's bin is under `smallest` (m·rad²), a bin of a
        few of the learner's blocks is most of a reflector in it, which its rate would hide (a
        row of them on a radar ±5° wide was each other's reference, and none was learnt,
        `fixtures.MIN_RING_BLOCKS`): there the bin's median azimuth sector, times the sectors,
        which a reflector in one or two of them does not raise and a band in all of them does
        (a TI board's bins within ~10 m are a block or two: band clutter there, weighed against
        the uniform share, was learnt as 12 spots in a 50-minute soak); 0 with under three
        sectors, where a median is no such guard.
        Clutter dense over part of the azimuths (the sea on one side, which the sectors price)
        or at one range only is learnt as fixtures where dense, as it was before."""
        if not (self.scans > 0 and at.shape[0]):
            return None
        n_range, n_el, _ = self.counts.shape
        ring = self.counts.sum(axis=2) / (self.scans * self.volume)  # (the time scale cancels: no t)
        i, j = np.divmod(self._cell(at), n_el)
        around = np.stack([ring[np.clip(i + d, 0, n_range - 1), j] for d in (-1, 0, 1)])
        sectors = np.zeros(i.size)
        if self.n_sectors >= 3:
            by_sector = self.sector_counts.reshape(self.n_sectors, n_range, n_el, -1).sum(axis=3)[:, i, j]
            sectors = self.n_sectors * np.median(by_sector, axis=0) / (self.scans * self.volume[i, j])
        return np.asarray(np.where(self.volume[i, j] >= smallest, np.median(around, axis=0), sectors))

    def summary(self) -> ProfileSummary | None:
        """As of its last scan, over range and elevation (standing and moving together) and, where
        a sector is denser still, azimuth, against all the false alarms it counted spread evenly;
        None before a scan was counted."""
        scale = self._scale(self.last_t)
        scans = self.scans / scale
        if not scans > 0:
            return None
        count = self.counts.sum(axis=2) / scale
        rate = count / scans
        ratio = _lower(count) / ((scans + PRIOR_SCANS) * self.volume)
        evenly = self.coverage.volume() / max(float(rate.sum()), 1e-9)
        ratio *= evenly
        i, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        peak, azimuth = float(ratio[i, j]), None
        concentrated = float(rate[ratio > 1.0].sum())
        if self.n_sectors > 1:
            by_sector = self.sector_counts.reshape(self.n_sectors, *self.counts.shape).sum(axis=3) / scale
            sectors = self.n_sectors * _lower(by_sector) / ((scans + PRIOR_SCANS) * self.volume) * evenly
            # what is priced above the even spread, by its ring or by its own sector (clutter in one
            # sector at every range is flat in the ring)
            concentrated += float((by_sector / scans)[(ratio[None] <= 1.0) & (sectors > 1.0)].sum())
            # named only where clearly denser than the ring's mean there (not a chance excess)
            sectors[sectors < _SECTOR_NAMED * count / ((scans + PRIOR_SCANS) * self.volume) * evenly] = 0.0
            k, i_k, j_k = np.unravel_index(int(np.argmax(sectors)), sectors.shape)
            if sectors[k, i_k, j_k] > peak:
                peak, i, j = float(sectors[k, i_k, j_k]), i_k, j_k
                west = -min(self.coverage.fov_az_rad, math.pi) + k * self.sector_rad
                azimuth = (math.degrees(west), math.degrees(west + self.sector_rad))
        near, far = np.clip(
            self._range_at(np.array([i, i + 1.0])), self.coverage.min_range_m, self.coverage.max_range_m
        )
        low = -self.coverage.fov_el_rad + j * self.el_size
        high = min(low + self.el_size, self.coverage.fov_el_rad)
        return ProfileSummary(
            per_scan=float(rate.sum()),
            concentrated=concentrated,
            peak_ratio=peak,
            peak_range_m=(float(near), float(far)),
            peak_elevation_deg=(math.degrees(low), math.degrees(high)),
            peak_azimuth_deg=azimuth,
        )


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """What a radar's profile says at the end of `track` (its summary line): the false alarms a
    scan it counted in all, those in bins denser than all of them spread evenly would make, and
    the densest bin: its density over that, its ranges (m) and elevations (°), and its azimuths
    (°, sensor frame) when it is one sector's (denser there than over the whole ring)."""

    per_scan: float
    concentrated: float
    peak_ratio: float
    peak_range_m: tuple[float, float]
    peak_elevation_deg: tuple[float, float]
    peak_azimuth_deg: tuple[float, float] | None = None


def _lower(counts: FloatArray) -> FloatArray:
    """The Poisson mean that `counts` plots exceed with chance `LOWER_QUANTILE`: the Gamma
    quantile by Wilson and Hilferty's cube-root approximation (within 2 % of scipy's exact
    `gammaincinv` from 10 counts up, and below it; exact, it costs a microsecond a bin)."""
    n = np.maximum(counts, 1e-9)
    return np.asarray(n * np.maximum(1.0 - 1.0 / (9.0 * n) - _Z / (3.0 * np.sqrt(n)), 0.0) ** 3)


class SiteClutterProfile(PerRadar[ClutterProfile]):
    """The clutter profiles of a site's radars (`PerRadar`; `fusion.clutter_profile`)."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(enabled, lambda sigmas, m: ClutterProfile(sigmas, m.coverage, m.splits_objects))

    def density(
        self, bit: int, model: MeasurementModel, t: float, z: FloatArray, stats: SensorStats
    ) -> FloatArray | None:
        profile = self._map(bit, model, z.shape[1], stats)
        return None if profile is None else profile.density(t, z, stats.radial_span(bit, model))

    def spatial_density(self, bit: int, at: FloatArray, smallest: float = 0.0) -> FloatArray | None:
        """`ClutterProfile.spatial_density` of this radar, over all its profiles (a range-rate
        radar's detections without range-rate have their own, `PerRadar`; the fixture learner
        pools both kinds), None before it has one."""
        found = [p.spatial_density(at, smallest) for (b, _), p in self.maps.items() if b == bit]
        densities = [d for d in found if d is not None]
        return np.asarray(np.sum(densities, axis=0)) if densities else None

    def observe(
        self,
        bit: int,
        model: MeasurementModel,
        t: float,
        z: FloatArray,
        counted: BoolArray,
        stats: SensorStats,
        sectored: BoolArray | None = None,
    ) -> None:
        profile = self._map(bit, model, z.shape[1], stats)
        if profile is not None:
            profile.observe(t, z, counted, float(stats.period_s[bit]), sectored)

    def summary(self, bit: int) -> ProfileSummary | None:
        """This radar's profile (`ClutterProfile.summary`): of its detections with range-rate
        where it has both kinds (they see the same places)."""
        for rows in (4, 3):
            profile = self.maps.get((bit, rows))
            if profile is not None:
                return profile.summary()
        return None
