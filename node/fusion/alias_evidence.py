"""Which alias of a wrapping radar's range-rate a track is at, told by all its plots together.

A radar whose range-rate wraps (`RadarModel.unambiguous_range_rate_mps`) reports a drone's
radial speed modulo twice its span. A track's second plot tells the alias where one plot can
(`gating`): a speed off by 2k·span has put it 2k·span·Δt off in range. At 20 Hz that is 0.7 m
for a ±7 m/s span, inside one plot's range noise for a radar of 1 m: tracks confirmed at the
alias the birth prior liked and lost their drone within half a second, scan after scan (an
outside test, 2026-12-06: 12–41 ID switches a minute). Together the plots tell it: a track's
plot ranges less the integral of its radial speed (each plot's range-rate taken at the alias
nearest the last plot's plus what the turn of the line of sight makes of the track's velocity,
so a drone's own change of radial speed is followed) stay level at the right alias and climb
at 2k·span at a wrong one. The weighted least-squares slope of that residual, with its variance
from the plots' range noise, weighs each alias: a young track's against the birth prior's odds
of it (`alias_prior`, the one `gating` uses at the second plot), an established one's on its
plots alone. A young track not at the likeliest alias, or an established one whose alias falls
under `SWITCH_ERROR`, takes the likeliest: its velocity changed by 2k·span along the line of
sight, spread over the axes as the birth prior spreads a radial speed, and its range moved to
the plots' estimate at that alias. A fit no line explains (χ² at `SWITCH_ERROR`/n² after n
plots: a false alarm taken), or whose speed moved half a span or more from one plot to the next
beyond the change of the track's own radial speed (it may have been followed at the wrong
alias), starts again. The sums live in the track table (`TrackTable.alias_sums`), recentred at every
plot so that neither time nor range grows in them; one radar keeps them per track (the first
with range-rate that saw it; a wrapping radar takes them over from one without a span).

A radar with range-rate configured without a span gets the same fits, its range-rates followed
as reported: where its range-rate wraps after all, its drones beyond the span move against it
by 2k·span, and the tracks that show it are counted (`AliasEvidence.contradicted`: health's
`fusion.range_rate_contradicted`, `track`'s summary), so that the missing key is named.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import chdtri

from cuas_node.fusion.measurement_models import MeasurementModel, RadarModel
from cuas_node.fusion.models import velocity_prior
from cuas_node.fusion.tracks import Status, TrackTable
from cuas_node.kernel.pose import wrap

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

SWITCH_ERROR = 0.01
"""An established track changes its alias only when its plots leave the one it has less than
this probability (`_decide`), and a young one past its second plot when one plot does
(`gating._alias_choice`; its fit, taking the likeliest, may move it sooner)."""


def wrapping_span(model: MeasurementModel) -> float | None:
    """The span of a radar scan whose range-rate wraps, None for any other scan."""
    if not isinstance(model, RadarModel) or model.dim != 4:
        return None
    return model.unambiguous_range_rate_mps


def alias_prior(
    model: RadarModel, los: FloatArray, radial: FloatArray, cut: bool = True
) -> tuple[int, FloatArray]:
    """The alias steps the birth prior allows (`reach`: its 3 sigmas) and, for tracks whose line
    of sight from the radar is `los` (N,3) and whose radial speed is `radial` (N,) now, the log
    weight (N, 2·reach + 1) of each alias k = −reach..reach: the prior along the line of sight
    (narrower for an elevated one: the climb prior is) at that speed plus 2k·span, normalised
    over those within its 3 sigmas (`cut`: −inf beyond, the alias a track has always allowed;
    else over them all, so that a track's plots can take it to a speed the prior finds rare)."""
    span = model.unambiguous_range_rate_mps
    assert span is not None
    reach = math.ceil(3.0 * model.initial_speed_sigma_mps / (2.0 * span))
    steps = np.arange(-reach, reach + 1)
    sigma = np.sqrt(prior_variance_along(model, los))[:, None]
    candidate = radial[:, None] + 2.0 * span * steps[None, :]
    allowed = (np.abs(candidate) <= 3.0 * sigma) | (not cut)
    allowed[:, reach] = True
    log_prior = np.where(allowed, -0.5 * (candidate / sigma) ** 2, -np.inf)
    return reach, log_prior - np.logaddexp.reduce(log_prior, axis=1, keepdims=True)


def prior_variance_along(model: RadarModel, los: FloatArray) -> FloatArray:
    """The birth prior's variance (N,) of the speed along each line of sight `los` (N,3)."""
    return np.asarray(np.einsum("ki,ij,kj->k", los, velocity_prior(model.initial_speed_sigma_mps), los))


def radial_spread(model: RadarModel, los: FloatArray) -> FloatArray:
    """The velocity change (N,3) per m/s more along each line of sight `los` (N,3), spread over
    the axes as the birth prior spreads a radial speed (`models.radial_posterior`: its radial
    part is 1; mostly level flight). Not the track's own covariance: its radial speed is pinned
    by the range-rate along lines of sight that have turned since, and the ratio blows up."""
    pl = los @ velocity_prior(model.initial_speed_sigma_mps)  # P l (the prior is symmetric)
    return np.asarray(pl / np.einsum("ki,ki->k", pl, los)[:, None])


def line_of_sight(model: RadarModel, positions: FloatArray) -> FloatArray:
    """Unit vectors (N,3 ENU) from the radar to these positions."""
    d = positions - model.pose.offset_enu_m
    return d / np.maximum(np.linalg.norm(d, axis=1), 1e-9)[:, None]


class AliasEvidence:
    """The fits of a scan's tracks, and what they told of each radar: for a radar configured
    with a span, the aliases they moved to; for one configured without (`contradicted`), the
    tracks whose plots' range moved at a speed its range-rate contradicted."""

    KEPT = 256  # disagreements kept per radar (the latest), for their median

    def __init__(self) -> None:
        self._disagreements: dict[int, list[float]] = {}
        self._contradicted: dict[int, int] = {}
        self._fastest: dict[int, float] = {}  # the largest radial speed a span-less radar's tracks took
        self._wraps: dict[int, bool] = {}  # each radar seen: whether it is configured with a span

    def observe(
        self,
        table: TrackTable,
        slots: IndexArray,
        z: FloatArray,
        r: FloatArray,
        t: float,
        model: MeasurementModel,
        bit: int,
    ) -> IndexArray:
        """These tracks (updated, or started, by the plots `z` (N,4) with noise `r` (N,4,4) of a
        scan at `t` of the radar `bit`) add their plot to their fit; of a wrapping radar, those
        whose fit says another alias (`_decide`) take the likeliest (returned); of a radar with
        range-rate configured without a span, a track whose fit contradicts the range-rate is
        counted (`contradicted`)."""
        if not isinstance(model, RadarModel) or model.dim != 4 or not slots.size:
            return slots[:0]
        span = model.unambiguous_range_rate_mps
        self._wraps[bit] = span is not None
        w = 1.0 / r[:, 0, 0]
        los = line_of_sight(model, table.x[slots, :3])
        fresh = table.alias_bit[slots] < 0
        if span is not None:  # a wrapping radar takes a fit over from one that does not wrap
            plain = [b for b, wraps in self._wraps.items() if not wraps]
            if plain:
                fresh |= np.isin(table.alias_bit[slots], plain)
        if fresh.any():
            table.alias_bit[slots[fresh]] = bit
            _restart(table, slots[fresh], t, z[fresh], w[fresh], los[fresh])
        own = ~fresh & (table.alias_bit[slots] == bit) & (table.alias_t[slots] < t)
        if span is None:
            own &= ~table.contradicted[slots]
            self._fastest[bit] = max(self._fastest.get(bit, 0.0), float(np.abs(z[:, 3]).max()))
        if not own.any():
            return slots[:0]
        slots, told, u = _add_plot(table, slots[own], t, z[own], w[own], los[own], span)
        if not told.any():
            return slots[:0]
        if span is None:
            self._contradict(table, slots[told], r[own][told, 3, 3], bit)
            return slots[:0]
        return _decide(table, slots[told], u[told], los[own][told], model, span)

    def contradicted(self, bit: int) -> tuple[int, float]:
        """The tracks of radar `bit` (configured without a span) whose plots' range moved at a
        speed their range-rate contradicted, and the median disagreement of the latest `KEPT`
        (m/s, when each was first told; 0 without): a wrapping radar's are 2k·span."""
        kept = self._disagreements.get(bit)
        return self._contradicted.get(bit, 0), float(np.median(kept)) if kept else 0.0

    def contradicted_total(self) -> int:
        """`contradicted`'s tracks over every radar (health's `fusion.range_rate_contradicted`)."""
        return sum(self._contradicted.values())

    def _contradict(self, table: TrackTable, slots: IndexArray, rate_variance: FloatArray, bit: int) -> None:
        """Count the established tracks whose fit's slope (the speed of their range less their
        range-rate's) is larger than any radial speed its tracks' plots carried (a wrapping
        radar's fill its span, and its drones beyond it disagree by twice that or more) and than
        3 of one plot's range-rate sigmas, and lies outside its own interval at 1 % / n² after n
        plots (tested at every plot, a line is so told falsely less than 0.4 % of the time over
        its life: Σ 1 %/n² from n = 3; a line started again counts anew, and the range-rate's
        own noise integrated between plots is not in the interval). No noise of the radar makes
        that; a radar whose range-rate wraps, configured without its span, does, as does one
        whose range-rate has the other sign or another unit."""
        sw, st, stt, sy, syt, _, n = table.alias_sums[slots].T
        spread = sw * stt - st * st
        slope = (sw * syt - st * sy) / spread
        established = table.status[slots] != Status.TENTATIVE
        significant = slope**2 * spread > sw * chdtri(1.0, SWITCH_ERROR / n**2)
        floor = np.maximum(9.0 * rate_variance, self._fastest[bit] ** 2)
        off = established & significant & (slope**2 > floor)
        if not off.any():
            return
        table.contradicted[slots[off]] = True
        self._contradicted[bit] = self._contradicted.get(bit, 0) + int(off.sum())
        kept = self._disagreements.setdefault(bit, [])
        kept.extend(np.abs(slope[off]).tolist())
        del kept[: -self.KEPT]


def _restart(
    table: TrackTable, slots: IndexArray, t: float, z: FloatArray, w: FloatArray, los: FloatArray
) -> None:
    """The fit of these tracks holds this plot alone (its time 0, its range-rate the speed followed,
    `los` the line of sight to the track then)."""
    table.alias_t[slots], table.alias_u[slots], table.alias_los[slots] = t, z[:, 3], los
    table.alias_v[slots] = table.x[slots, 3:]
    sums = np.zeros((slots.size, 7))
    sums[:, 0], sums[:, 3], sums[:, 5], sums[:, 6] = w, w * z[:, 0], w * z[:, 0] ** 2, 1.0
    table.alias_sums[slots] = sums


def _add_plot(
    table: TrackTable,
    slots: IndexArray,
    t: float,
    z: FloatArray,
    w: FloatArray,
    los: FloatArray,
    span: float | None,
) -> tuple[IndexArray, npt.NDArray[np.bool_], FloatArray]:
    """Add each track's plot to its fit (the sums Σw, Σwt, Σwt², Σwy, Σwyt, Σwy², n with time
    and residual y centred on the last plot: recentred here on this one; `los` the line of sight
    to each track now). Returns the slots, which of them have a fit that tells (three plots or
    more on a line) and the speed followed now."""
    sw, st, stt, sy, syt, syy, n = table.alias_sums[slots].T
    dt = t - table.alias_t[slots]
    last = table.alias_u[slots]
    # Its radial speed followed from plot to plot (as reported, for a radar without a span): the
    # alias nearest the last one's plus the change of the track's own radial speed since, its
    # alias moves left out (`alias_v`): a drone passing near, or turning, changes its radial
    # speed by more than a span between plots at 1-2 Hz; the smallest wrapped change alone
    # moved a true track there, the line of sight's turn alone restarted turning drones' fits.
    then = np.einsum("ki,ki->k", table.alias_los[slots], table.alias_v[slots])
    expected = last + np.einsum("ki,ki->k", los, table.x[slots, 3:]) - then
    step = np.zeros_like(expected) if span is None else wrap(z[:, 3] - expected, span)
    u = z[:, 3].copy() if span is None else expected + step
    moved = 0.5 * (last + u) * dt  # the range that speed covered since the last plot
    sy, syt, syy = sy + moved * sw, syt + moved * st, syy + 2.0 * moved * sy + moved * moved * sw
    st, stt, syt = st - dt * sw, stt - 2.0 * dt * st + dt * dt * sw, syt - dt * sy
    sw, sy, syy, n = sw + w, sy + w * z[:, 0], syy + w * z[:, 0] ** 2, n + 1.0
    table.alias_sums[slots] = np.column_stack([sw, st, stt, sy, syt, syy, n])
    table.alias_t[slots], table.alias_u[slots], table.alias_los[slots] = t, u, los
    table.alias_v[slots] = table.x[slots, 3:]
    # A speed followed across half a span or more since the last plot may be followed at the
    # wrong alias (a turning drone after a few missed scans, at a small span: it moved a true
    # track by 2·span); nor do plots a line does not explain (a false alarm taken) tell
    # anything. Either way the fit starts again at this plot. (The χ² test at 1 %/n² after n
    # plots: at 1 % a plot, sound fits broke every hundred plots or so, and a young track, its
    # evidence gone, went back to the alias the prior prefers.)
    broken = np.abs(step) > 0.5 * span if span is not None else np.zeros(slots.size, dtype=bool)
    told = (n > 2.0) & ~broken
    if told.any():
        spread = sw[told] * stt[told] - st[told] ** 2
        fitted = stt[told] * sy[told] ** 2 - 2.0 * st[told] * sy[told] * syt[told] + sw[told] * syt[told] ** 2
        broken[told] = syy[told] * spread - fitted > spread * _line_bar(n[told])
    if broken.any():
        _restart(table, slots[broken], t, z[broken], w[broken], los[broken])
        told &= ~broken
    return slots, told, u


class _LineBars:
    """χ² at `SWITCH_ERROR`/n² with n − 2 degrees of freedom, the bar of a fit of n plots
    (`_add_plot`; tested at every plot: a sound line broken < 0.4 % of the time), by n: a table
    grown as fits grow, since every scan asks it of every track and n is a whole count."""

    KEPT = 4096  # plots; a fit longer than that (3.4 min at 20 Hz) is asked of scipy

    def __init__(self) -> None:
        self._bars = np.zeros(0)

    def __call__(self, n: FloatArray) -> FloatArray:
        top = int(n.max(initial=0.0))
        if top >= self.KEPT:
            return np.asarray(chdtri(n - 2.0, SWITCH_ERROR / n**2), dtype=np.float64)
        if top >= self._bars.size:
            counts = np.arange(3.0, min(2 * top + 3, self.KEPT))
            self._bars = np.concatenate([np.full(3, np.nan), chdtri(counts - 2.0, SWITCH_ERROR / counts**2)])
        return np.asarray(self._bars[n.astype(np.intp)], dtype=np.float64)


_line_bar = _LineBars()


def _decide(
    table: TrackTable, slots: IndexArray, u: FloatArray, los: FloatArray, model: RadarModel, span: float
) -> IndexArray:
    """Weigh each alias of these tracks (their fit's slope is 2k·span where the drone's radial
    speed is alias k of the one followed, `u`; the track's own speed is some alias of that one)
    against the one each has; move a tentative track whose alias is not the likeliest, and an
    established one whose alias falls under `SWITCH_ERROR`. (A young track takes the likeliest:
    its fit, unlike one plot, does not flip on noise, and a track left at the alias its second
    plot chose loses its drone within a scan or two where that alias is wrong: at 5 Hz with 1 m
    of range noise its third plot left that alias at 2 % and the next fell outside its gate.)"""
    sw, st, stt, sy, syt = table.alias_sums[slots, :5].T
    spread = sw * stt - st * st
    radial = np.einsum("ki,ki->k", los, table.x[slots, 3:])
    offset = radial - u  # the track's alias against the one followed: a multiple of 2·span
    slope = (sw * syt - st * sy) / spread - offset  # against the track's alias
    variance = sw / spread
    # Most tracks' fits leave no doubt: a slope within the span favours the alias they have over
    # every other by at least exp(2·span·(span − |slope|)/variance). An established track is
    # weighed on its plots alone (its alias was chosen when it was young; a fit started again
    # since, of a few plots, is no reason for the birth prior to move it), so only a slope
    # beyond the span can move it; a young one against the birth prior too, whose odds of any
    # other alias are at most exp(½ (radial / σ)²) (σ the prior's along the line of sight: no
    # alias is likelier a priori than a speed of 0): weighed only where that could make another
    # alias likelier.
    young = table.status[slots] == Status.TENTATIVE
    bound = np.where(young, 0.5 * radial**2 / prior_variance_along(model, los), 0.0)
    doubt = (np.abs(slope) >= span) | (2.0 * span * (span - np.abs(slope)) < bound * variance)
    if not doubt.any():
        return slots[:0]
    slots, los, slope, variance, young = slots[doubt], los[doubt], slope[doubt], variance[doubt], young[doubt]
    offset = offset[doubt]
    # Every alias the steps reach is weighed (no cut at the prior's 3 sigmas, as at the second
    # plot): a track at a speed the prior finds rare keeps it, or comes back to it, on its plots.
    reach, log_prior = alias_prior(model, los, radial[doubt], cut=False)
    steps = np.arange(-reach, reach + 1)
    log_post = np.where(young[:, None], log_prior, 0.0)
    log_post = log_post - 0.5 * (slope[:, None] - 2.0 * span * steps[None, :]) ** 2 / variance[:, None]
    log_post -= np.logaddexp.reduce(log_post, axis=1, keepdims=True)
    likeliest = np.argmax(log_post, axis=1) != reach
    switch = likeliest & (young | (log_post[:, reach] < math.log(SWITCH_ERROR)))
    if not switch.any():
        return slots[:0]
    slots, los, offset = slots[switch], los[switch], offset[switch]
    dv = 2.0 * span * steps[np.argmax(log_post[switch], axis=1)]
    # The range the plots put the track at, at that alias (the intercept of a line of that
    # slope through the residuals: now, at time 0 of the sums).
    sw, st, sy = table.alias_sums[slots, 0], table.alias_sums[slots, 1], table.alias_sums[slots, 3]
    at = (sy - (dv + offset) * st) / sw
    dr = at - np.linalg.norm(table.x[slots, :3] - model.pose.offset_enu_m, axis=1)
    dx = np.concatenate([los * dr[:, None], radial_spread(model, los) * dv[:, None]], axis=1)
    table.x[slots] += dx
    table.xm[slots] += dx[:, None, :]
    table.v_accel[slots] += dx[:, 3:]  # a change of alias is no acceleration (`classify`)
    table.alias_v[slots] += dx[:, 3:]  # nor a change of radial speed to follow (`_add_plot`)
    return slots
