"""Gating (the first step of association): which (track, measurement) pairs of a scan are inside
each track's gate, and what each gated pair costs, with the quantities the assignment, the
updates and the soft (JPDA) update share.

A box pre-gate first: the gate ellipsoid lies inside the box |ν_d| ≤ sqrt(γ S_dd), so testing
each coordinate against it (no inversions) rejects most pairs exactly; the full Mahalanobis test
and log-determinant are computed only for the pairs that pass.

A radar whose range-rate wraps (`RadarModel.unambiguous_range_rate_mps`, a TI board's ±10 m/s)
reports a drone's radial speed modulo twice its span, and the innovation is wrapped to that span
(`RadarModel.innovation`). A new track starts at the reported alias (`models.radial_posterior`),
which is the drone's speed along the line of sight only if that is within the span. Its second
plot tells which alias it is: a speed off by 2k·span has put the predicted plot off by about
2k·span times the time between the plots in range (a metre a frame at 20 Hz for a TI board,
twenty metres a scan at 1 Hz), and in the angles as the birth's level-flight reading of the speed
moves it; so each speed within 3 sigmas of the birth prior along the line of sight is tried where
the track would then be, weighed by that prior, and the likeliest taken (`_aliasing`,
`_alias_choice`; `Gating.alias` the speed change, which the tracker applies before the update,
`take_alias`). After that the track follows the drone's true speed and the wrapped innovation
keeps it there; a drone that crosses the span's edge while tracked is no new alias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.fusion import imm
from cuas_node.fusion.alias_evidence import (
    SWITCH_ERROR,
    alias_prior,
    line_of_sight,
    radial_spread,
    wrapping_span,
)
from cuas_node.fusion.measurement_models import MeasurementModel, RadarModel
from cuas_node.fusion.models import mahalanobis_logdet, radar_innovation
from cuas_node.fusion.tracks import Status, TrackTable
from cuas_node.kernel.pose import cartesian_to_spherical, wrap

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class Gating:
    """The gated (track row, measurement) pairs of a scan, as lists (P pairs), and the mask."""

    gated: BoolArray  # (K,M)
    ki: IndexArray  # (P,) track rows of the gated pairs
    mj: IndexArray  # (P,) their measurements
    cost: FloatArray  # (P,) −2 log-likelihood up to a constant
    loglik: FloatArray  # (P,) the pair's log-likelihood: −½ (cost + D ln 2π)
    nu: FloatArray  # (P,D) innovations
    r: FloatArray  # (P,D,D) each pair's measurement noise
    h: FloatArray  # (K,D,6) Jacobians at the predicted states
    z_pred: FloatArray  # (K,D) predicted measurements
    rate_extra: FloatArray | None  # (K,) second-order range-rate variance (`imm.gate_quantities`)
    alias: FloatArray | None  # (P,3) a young track's velocity change for its alias (module)
    terms: imm.ModelTerms  # of the pairs at their tracks' time (`imm.mixture_cost`)
    term_of: IndexArray  # (P,) each pair's row of `terms`, −1 for a late measurement's

    def terms_of(self, pairs: IndexArray) -> imm.ModelTerms:
        """The `imm.ModelTerms` of these pairs, all at their tracks' time, for their update."""
        rows = self.term_of[pairs]
        if (rows < 0).any():
            raise ValueError("a late measurement's pair has no model terms")
        return self.terms.take(rows)

    def dense(self, values: FloatArray, fill: float) -> FloatArray:
        """Per-pair values (P, ...) spread over the (K, M, ...) grid, `fill` outside the gate."""
        out = np.full((*self.gated.shape, *values.shape[1:]), fill)
        out[self.ki, self.mj] = values
        return out


def gate_scan(
    table: TrackTable,
    active: IndexArray,
    t: float,
    dt: FloatArray,
    model: MeasurementModel,
    z: FloatArray,
    r: FloatArray,
    gamma: float,
    params: imm.ImmParams,
) -> Gating:
    """Gate every (track, measurement) pair of a scan at `t` (`z` (M,D), noises `r` (M,D,D)) against
    the tracks `active` (predicted to it; `dt` ≤ 0 where the measurement is older than a track)
    and price the gated ones by −2 log-likelihood (the IMM mixture's, `imm.mixture_cost`, for
    measurements at the tracks' time); `gamma` the gate's chi-square bound."""
    z_pred, h, hph, rate_extra = imm.gate_quantities(table, active, dt, model, params)
    var_t = np.diagonal(hph, axis1=1, axis2=2)
    var_m = np.diagonal(r, axis1=1, axis2=2)
    # First coordinate over all pairs (range for a radar), the rest only for its survivors.
    d0 = z[None, :, 0] - z_pred[:, None, 0]
    if 0 in model.angle_rows:
        d0 = wrap(d0)
    bound = gamma * (var_t[:, None, 0] + var_m[None, :, 0])
    near = d0 * d0 <= bound
    aliasing = _aliasing(table, active, t, dt, model, z_pred)
    if aliasing is not None:  # a young track's plot may be an alias step or more off in range
        # At its second plot its gate reaches out to an alias whose range lies beyond it (at 1 Hz
        # every one; at 20 Hz those two steps away and more: one step, a metre, lies inside), the
        # alias paying its prior odds against the one it has out of the gate. (Reaching out at
        # every young plot, or for every alias, let false alarms make false tracks: ti-20x50,
        # ti-stress and demo one each.)
        young = aliasing.young & (table.updates[active] == 1)
        off, var = d0[young], bound[young] / gamma
        for j in range(2 * aliasing.reach + 1):
            centre = aliasing.shift[young, j, 0, None]
            beyond = centre * centre > bound[young]
            if beyond.any():
                room = gamma - aliasing.penalty[young, j, None]
                near[young] |= beyond & ((off - centre) ** 2 <= var * room)
    ki, mj = np.nonzero(near)
    if model.ranging:
        ki, mj = _along_bearing(table, active, ki, mj, model, z, r)
    r_pair = r[mj]
    nu_p = model.innovation(z[mj], z_pred[ki])
    alias, alias_cost, penalty = _alias_choice(table, active, ki, nu_p, var_t, r_pair, aliasing)
    box = np.all(nu_p * nu_p <= gamma * (var_t[ki] + np.diagonal(r_pair, axis1=1, axis2=2)), axis=1)
    ki, mj, nu_p, r_pair, penalty = ki[box], mj[box], nu_p[box], r_pair[box], penalty[box]
    d2, logdet = mahalanobis_logdet(nu_p, hph[ki] + r_pair)
    inside = d2 + penalty < gamma
    ki, mj, nu_p, r_pair = ki[inside], mj[inside], nu_p[inside], r_pair[inside]
    cost = d2[inside] + logdet[inside]
    now = dt[ki] == 0.0  # (a late measurement is judged by the estimate carried back)
    cost[now], terms = imm.mixture_cost(
        table,
        active[ki[now]],
        nu_p[now],
        h[ki[now]],
        r_pair[now],
        None if rate_extra is None else rate_extra[ki[now]],
    )
    term_of = np.where(now, np.cumsum(now) - 1, -1)
    if alias is not None:
        alias, alias_cost = alias[box][inside], alias_cost[box][inside]
        cost += alias_cost
    gated: BoolArray = np.zeros((active.size, z.shape[0]), dtype=bool)
    gated[ki, mj] = True
    loglik = -0.5 * (cost + z.shape[1] * math.log(2 * math.pi))
    return Gating(gated, ki, mj, cost, loglik, nu_p, r_pair, h, z_pred, rate_extra, alias, terms, term_of)


@dataclass(frozen=True)
class _Aliasing:
    """The tracks (rows of a scan's gating) that may still be at the wrong alias of a wrapping
    radar's range-rate: `young` (tentative, at the scan's time), `shift` where a speed k aliases
    up (2k·span more along the line of sight, spread over the axes as the birth prior spreads a
    radial speed: `take_alias`) would have put its predicted plot since its last update (in
    range about 2k·span times that time; in the angles too, as a level-flight reading of an
    elevated line of sight moves it: predicted, not linearised, since at 1 Hz that is tens of
    metres at a range of tens), `reach` the alias steps the birth
    prior allows (its 3 sigmas), `span` the radar's, and each alias's prior weight: the birth
    prior along the line of sight (narrower for an elevated one: the climb prior is) at the
    track's speed there now plus 2k·span, normalised over those within its 3 sigmas."""

    young: BoolArray  # (K,)
    spread: FloatArray  # (K,3) the velocity change per m/s more along its line of sight
    shift: FloatArray  # (K, 2·reach + 1, 3) the change of predicted range, azimuth, elevation
    reach: int
    span: float
    log_prior: FloatArray  # (K, 2·reach + 1) of each alias k = −reach..reach (−inf: beyond 3 σ)
    penalty: FloatArray  # (K, 2·reach + 1) 2 ln of the odds of the alias it has against alias k, ≥ 0


def _aliasing(
    table: TrackTable,
    active: IndexArray,
    t: float,
    dt: FloatArray,
    model: MeasurementModel,
    z_pred: FloatArray,
) -> _Aliasing | None:
    """The young tracks of a scan of a radar whose range-rate wraps, None for any other scan;
    `z_pred` the tracks' predicted measurements (range-rate in row 3)."""
    span = wrapping_span(model)
    if span is None:
        return None
    assert isinstance(model, RadarModel)
    since = t - table.t_update[active]
    young = (table.status[active] == Status.TENTATIVE) & (dt == 0.0) & (since > 0.0)
    if not young.any():
        return None
    rows = np.flatnonzero(young)
    slots = active[rows]
    los = line_of_sight(model, table.x[slots, :3])
    reach, young_prior = alias_prior(model, los, z_pred[rows, 3])
    steps = np.arange(-reach, reach + 1)
    spread = np.zeros((active.size, 3))
    spread[rows] = radial_spread(model, los)
    log_prior = np.full((active.size, steps.size), -np.inf)
    log_prior[:, reach] = 0.0
    log_prior[rows] = young_prior
    penalty = np.maximum(2.0 * (log_prior[:, reach : reach + 1] - log_prior), 0.0)
    # Where each other allowed alias would have put the track's plot (the one it has: nowhere else).
    shift = np.zeros((active.size, steps.size, 3))
    allowed = np.isfinite(young_prior)
    allowed[:, reach] = False
    which, step = np.nonzero(allowed)
    dv = spread[rows[which]] * (2.0 * span * steps[step])[:, None]
    moved = table.x[slots[which], :3] + dv * since[rows[which], None]  # (its velocity: no position row)
    seen = np.column_stack(cartesian_to_spherical(model.pose.enu_to_sensor(moved)))
    shift[rows[which], step] = radar_innovation(seen, z_pred[rows[which], :3])
    return _Aliasing(young, spread, shift, reach, span, log_prior, penalty)


def _alias_choice(
    table: TrackTable,
    active: IndexArray,
    ki: IndexArray,
    nu: FloatArray,
    var_t: FloatArray,
    r: FloatArray,
    aliasing: _Aliasing | None,
) -> tuple[FloatArray | None, FloatArray, FloatArray]:
    """For the pairs (track rows `ki`, innovations `nu`, changed in place; their range and angle
    innovation variances from the tracks' `var_t` (K,D) and the plots' `r` (P,D,D)) of young
    tracks of a radar whose range-rate wraps (`aliasing`): the velocity change (P,3) of the
    alias, 2k·span more along the line of sight (`_Aliasing.spread`), that best explains the
    plot's position, each alias weighed by its prior; −2 ln of the chosen one's prior weight at
    the track's second plot (the pairs' extra cost: the ambiguity the first plot left); and 2 ln
    of the odds of the alias it had against the one chosen (≥ 0), which the pair must fit its
    gate with. None and zeros without such pairs."""
    none = np.zeros(ki.size)
    if aliasing is None or not aliasing.young[ki].any():
        return None, none, none
    second = aliasing.young[ki]
    slots, reach, span = active[ki[second]], aliasing.reach, aliasing.span
    log_prior = aliasing.log_prior[ki[second]]
    k = np.arange(-reach, reach + 1)[None, :]
    residual = nu[second, None, :3] - aliasing.shift[ki[second]]  # (S, 2·reach + 1, 3)
    residual[..., 1] = wrap(residual[..., 1])  # an alias behind the radar shifts the azimuth by ±π
    variance = var_t[ki[second], :3] + np.diagonal(r[second], axis1=1, axis2=2)[:, :3]
    log_post = log_prior - 0.5 * np.sum(residual**2 / variance[:, None, :], axis=2)
    log_post -= np.logaddexp.reduce(log_post, axis=1, keepdims=True)
    best = np.argmax(log_post, axis=1)
    rows = np.arange(best.size)
    # At its second plot a track takes the likeliest alias; later, while young, it leaves the one
    # it took only when the plot makes that one near impossible (a single plot at 20 Hz tells
    # aliases a metre apart in range: taken on the likelier, one young track in twenty would
    # change its speed by 20 m/s on noise).
    settled = (table.updates[slots] > 1) & (log_post[:, reach] > math.log(SWITCH_ERROR))
    best[settled] = reach
    alias = np.zeros((ki.size, 3))
    alias[second] = aliasing.spread[ki[second]] * (2.0 * span * k[0, best])[:, None]
    nu[second, :3] = residual[rows, best]
    # The prior is paid once, at the second plot; later ones only correct a choice gone wrong.
    cost = none.copy()
    cost[second] = np.where(table.updates[slots] == 1, -2.0 * log_prior[rows, best], 0.0)
    penalty = none.copy()
    penalty[second] = aliasing.penalty[ki[second], best]
    return alias, cost, penalty


def take_alias(table: TrackTable, slots: IndexArray, alias: FloatArray, t: float) -> None:
    """Give these young tracks (predicted to `t`) the velocity change their plot's alias says
    (`Gating.alias`, (A,3) m/s, spread over the axes as the birth prior spreads a radial speed, so
    the track is the one its first plot would have started had it reported that alias), and the
    position it has carried them to since their last update, every model alike."""
    move = np.any(alias != 0.0, axis=1)
    if not move.any():
        return
    slots, dv = slots[move], alias[move]
    dx = np.concatenate([dv * (t - table.t_update[slots])[:, None], dv], axis=1)
    table.x[slots] += dx
    table.xm[slots] += dx[:, None, :]
    table.alias_v[slots] += dv  # an alias taken is no change of radial speed (`alias_evidence`)


def _along_bearing(
    table: TrackTable,
    active: IndexArray,
    ki: IndexArray,
    mj: IndexArray,
    model: MeasurementModel,
    z: FloatArray,
    r: FloatArray,
) -> tuple[IndexArray, IndexArray]:
    """Keep the pairs of a ranging sensor's scan that a bearing-only track could own: the
    detection lies in the track's direction (from the node) within three of the standard
    deviations of the bearings that built it. Its range is a guess, so the linearised gate
    alone would take any detection on the near side of a long uncertainty."""
    unranged = ~np.isfinite(table.t_ranged[active[ki]])
    if not unranged.any():
        return ki, mj
    seen = model.initiate(z[mj[unranged]], r[mj[unranged]])[0][:, :3]
    keep = np.ones(ki.size, dtype=bool)
    keep[unranged] = table.along_bearing(active[ki[unranged]], seen)
    return ki[keep], mj[keep]
