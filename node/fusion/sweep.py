"""When a scanning radar has looked at a track: each track's own sweep clock.

A scanning radar's beam sweeps its azimuth sector once a period and it stamps each plot with the
time the beam passed it, so no plot, and no instant, is a look at the whole coverage: fused as
frames, every plot charged a miss to every other track in view (a sweep of 30 plots was 30
looks, and no track ever confirmed). Its plots are fused as partial scans at their own times
(those stamped within a few milliseconds of each other as one, `batch_window_s`), and each
track keeps the time of its last counted look by a sweep (`TrackTable.t_swept`):

- a plot it takes more than three quarters of a period (`SWEEP_GUARD`) after its last hit is
  that sweep's look, a hit (charging first the sweeps missed since its last look); one sooner
  is the same look again (a target's plot split across two beam dwells, the second pass of a
  sector scan that goes back and forth within its period): it updates the state, and is no
  second hit, so one sweep never confirms a track alone;
- once a period and the guard have gone by without such a plot, the beam has passed it: a
  check (an empty full scan at the time of the radar's next plot, or of its `EmptyRadarScan`
  line) charges it the sweeps it missed if it is in plain view, never more than the passes
  since the radar's previous scan (`passes_since_report`), and its clock moves on by them;
- the radar's first report, and a silence its false alarms make improbable (it was off), charge
  nothing: the clocks skip those sweeps (`SweepingRadars`).

Per track, not per sweep from a fixed start: the pass over a target comes when the beam reaches
its azimuth, and a target near any fixed boundary (hovering there, a few milliseconds either
side) would have two plots in one window and none in the next. The guard also absorbs a sweep
rate a little off the configured `rate_hz` (a rotation at 57 rpm for 60). A track's clock is
shared by the scanning radars that see it: with two, a hit of either is the other's look too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import radar_model
from cuas_node.fusion.params import RadarSensor
from cuas_node.fusion.tracks import Status, TrackTable

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

# How early or late, as a fraction of the period, a sweep's pass over a target may come: its
# azimuth moved, its plot's stamp is the beam's at a noisy azimuth, the rate is a little off.
SWEEP_GUARD = 0.25


def repeated(t: float, t_hit: FloatArray, period_s: float) -> BoolArray:
    """Hits at `t` too soon after the track's last hit by a sweep to be the next sweep's: the same
    look. (From the hit, not the last look: a clock moved on by misses may run a little ahead of
    the track's real passes when the rate is a little off, and the pass it then meets is a hit.)"""
    return np.asarray(t - t_hit < (1.0 - SWEEP_GUARD) * period_s)


def overdue(t: float, t_swept: FloatArray, period_s: float) -> BoolArray:
    """Tracks the beam has passed since their last look without a plot taking them."""
    return np.asarray(t - t_swept > (1.0 + SWEEP_GUARD) * period_s)


def missed_sweeps(t: float, t_swept: FloatArray, period_s: float) -> FloatArray:
    """How many passes of the beam over each track have gone by since its last look (whole
    sweeps, each a period and the guard old by `t`)."""
    return np.asarray(np.maximum(np.floor((t - t_swept) / period_s - SWEEP_GUARD), 0.0))


def passes_since_report(gap_s: float, period_s: float) -> float:
    """The most passes of the beam over one track since the radar's report before this one (or
    a guard's worth before it: a pass just before that report was not yet overdue there): no
    more misses than that are charged at once (a clock that fell far behind, of a track another
    sensor kept, is moved on, not charged for sweeps this radar never reported)."""
    return math.ceil(gap_s / period_s + SWEEP_GUARD) if math.isfinite(gap_s) else math.inf


@dataclass(frozen=True, slots=True)
class SweepScan:
    """What a scanning radar's scan needs to charge misses: its period, the time since its report
    before (`passes_since_report`), its learnt Pd, the tracks' M-of-N window mask and its bit."""

    period_s: float
    gap_s: float
    pd: float
    mask: np.uint32
    bit: int

    def charge(self, table: TrackTable, slots: IndexArray, n: FloatArray) -> None:
        """`n` misses in plain view each, as `TrackManager.record` charges one: zeros into the M-of-N
        window, ln(1 − Pd) off the score, −ln(1 − Pd) onto the evidence of absence, and the sensor's
        misses waiting to be proven (established tracks)."""
        n = np.minimum(n, 31.0)
        table.hits[slots] = (table.hits[slots] << n.astype(np.uint32)) & self.mask
        table.score[slots] += n * np.log1p(-self.pd)
        table.absence[slots] -= n * np.log1p(-self.pd)
        # (Misses of a track that stayed put teach the radar no Pd, as its hits: `looks.moved`.)
        learn = (table.status[slots] != Status.TENTATIVE) & table.moved[slots]
        table.unproven_misses[slots[learn], self.bit] += n[learn].astype(np.int32)


def check(table: TrackTable, active: IndexArray, looked: BoolArray, t: float, scan: SweepScan) -> BoolArray:
    """A check at `t`: the tracks the beam has passed since their last look. Their clocks move on
    by the sweeps missed (on the grid of their passes, so the next pass is not taken for this
    one's); those in plain view (`looked`) are charged those misses, no more than the passes
    since the radar's last report: all but one here, the last by the caller (the scan's miss)."""
    due = overdue(t, table.t_swept[active], scan.period_s)
    n = missed_sweeps(t, table.t_swept[active[due]], scan.period_s)
    table.t_swept[active[due]] += n * scan.period_s
    n = np.minimum(n, passes_since_report(scan.gap_s, scan.period_s))
    charged = looked[due] & (n > 1.0)
    if charged.any():  # (an overdue track has missed a sweep, and the clamp is at least one)
        scan.charge(table, active[due][charged], n[charged] - 1.0)
    return looked & due


def counted_hits(
    table: TrackTable, active: IndexArray, updated: BoolArray, in_sight: BoolArray, t: float, scan: SweepScan
) -> tuple[BoolArray, BoolArray]:
    """Of the tracks a plot at `t` updated, the ones it gives a look (not its sweep's look again:
    `repeated`). One whose last look is two or more periods back missed the sweeps between, where
    no check came to charge them (a quiet radar sends nothing between its plots, and its plots
    come first at their time): those misses are charged now, before the hit, if it is in plain
    view (no more than the passes since the radar's last report, the hit's among them). Returns
    the counted hits and the tracks so charged."""
    counted = updated & ~repeated(t, table.t_sweep_hit[active], scan.period_s)
    owed = np.rint((t - table.t_swept[active]) / scan.period_s) - 1.0
    owed = np.minimum(owed, passes_since_report(scan.gap_s, scan.period_s) - 1.0)
    late = counted & in_sight & (owed >= 1.0)
    if late.any():
        scan.charge(table, active[late], owed[late])
    table.t_swept[active[counted]] = t
    table.t_sweep_hit[active[counted]] = t
    return counted, late


def batch_window_s(sensor: RadarSensor) -> float:
    """How far apart a scanning radar's plots may be stamped and still be associated together,
    as one partial scan at the midpoint of their stamps. One at a time, a false alarm stamped a
    few milliseconds before a target's plot in its track's gate took the track (the target's
    plot, a better fit, came too late to compete). The midpoint moves no plot's time by more
    than half the window: at the fastest speed the velocity prior admits (3σ) that is half the
    radar's range sigma, and at most an eighth of the sweep guard (the sweep clocks' slack)."""
    speed_sigma_mps = radar_model(sensor).initial_speed_sigma_mps
    return min(sensor.range_sigma_m / (3.0 * speed_sigma_mps), SWEEP_GUARD / sensor.scan_rate_hz / 4.0)


@dataclass(slots=True)
class PlotBatch:
    """Consecutive plots of one scanning radar stamped within its batch window of the first."""

    sensor_id: str
    t_first: float
    t_last: float
    plots: list[object]

    @property
    def t_mid(self) -> float:
        return 0.5 * (self.t_first + self.t_last)


class SweepingRadars:
    """When the engine checks a scanning radar's tracks (`check`): at each batch of its plots
    and `EmptyRadarScan` lines. A radar that reported nothing for longer than its learnt false
    alarms make likely (probability α) was off, not sweeping an empty sky, and before its first
    report it was not there: its tracks' clocks skip the silence's sweeps, so it charges no
    misses.

    It also gathers each radar's plots into batches (`batch_window_s`): the engine hands it each
    capture time's plots in capture-time order (`hold`); a batch is closed by the first plot
    beyond its window, by anything else the engine fuses that moves tracks (so nothing is fused
    out of order; a GPS fix does not), or by the time up to which everything has been fused
    passing its window (`close`)."""

    def __init__(self, windows_s: dict[str, float]) -> None:
        self.sensor_ids = set(windows_s)
        self.windows_s = windows_s
        self.open: PlotBatch | None = None
        self._last: dict[str, float] = {}

    def hold(self, sensor_id: str, t: float, plots: list[object]) -> PlotBatch | None:
        """Add a capture time's plots; returns the batch they closed, if any."""
        batch = self.open
        joins = batch is not None and batch.sensor_id == sensor_id and batch.t_last <= t
        if batch is not None and joins and t - batch.t_first <= self.windows_s[sensor_id]:
            batch.t_last = t
            batch.plots += plots
            return None
        self.open = PlotBatch(sensor_id, t, t, list(plots))
        return batch

    def heartbeat(self, sensor_id: str, t: float) -> bool:
        """Whether a radar's `EmptyRadarScan` at `t` falls within its open batch: that batch's check
        is its own (ignored, as an empty line with the capture time of its plots is)."""
        batch = self.open
        return batch is not None and batch.sensor_id == sensor_id and batch.t_first <= t <= batch.t_last

    def held(self) -> int:
        """Plots in the open batch (not fused yet)."""
        return 0 if self.open is None else len(self.open.plots)

    def close(self, until: float = math.inf) -> PlotBatch | None:
        """The open batch, if its window ends by `until` (everything stamped up to then fused)."""
        batch = self.open
        if batch is None or batch.t_first + self.windows_s[batch.sensor_id] > until:
            return None
        self.open = None
        return batch

    def arrived(
        self, table: TrackTable, sensor_id: str, t: float, period_s: float, per_sweep: float, alpha: float
    ) -> None:
        last = self._last.get(sensor_id, -math.inf)
        self._last[sensor_id] = max(last, t)
        silent_sweeps = (t - last) / period_s - 1.0
        if silent_sweeps > 0.0 and math.exp(-per_sweep * silent_sweeps) < alpha:
            # Its first report, or it was off. Each track's clock skips the sweeps of the silence
            # on its own grid, to a quarter period to a period and a quarter before `t`: its next
            # pass, within a period, is then its next look (neither a repeat nor overdue first).
            active = table.active()
            skipped = missed_sweeps(t, table.t_swept[active], period_s)
            table.t_swept[active] += skipped * period_s

    def due(self, table: TrackTable, t: float, period_s: float) -> bool:
        """Whether the beam has passed some track since its last look: a check is worth its scan.
        (Not throttled: skipping a check, then clamping the misses to the passes since the last
        scan, lost a miss, and a sweep's closing `EmptyRadarScan` must charge its misses then.)"""
        return bool(overdue(t, table.t_swept[table.active()], period_s).any())
