"""Interacting Multiple Model filtering over all tracks at once.

Motion models that differ in acceleration noise and turn rate (`default_params`: a quiet
constant-velocity one for cruise and hover, a coordinated turn each way for the turns drones
make, with more noise for whatever else they do). Each model has a separate, smaller vertical
noise. Everything is batched over tracks (and over models), so the cost per step does not grow
with Python-level loops.

Out-of-sequence measurements: gating evaluates a measurement older than a track's state against
the estimate retrodicted to its time (x = F(dt) x with dt < 0, plus `carry_noise` of going
back); the update itself is `late`'s.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import MeasurementModel, RadarModel
from cuas_node.fusion.models import (
    STATE_DIM,
    axis_noise,
    cholesky_lower,
    cv_predict,
    forward_substitute,
    log_det_rows,
    range_rate_curvature,
    turn_matrix,
    white_accel_pattern,
)
from cuas_node.fusion.params import FusionParams
from cuas_node.fusion.tracks import TrackTable, keep_speed, mixture_spread

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

RANGE_RATE_EVIDENCE = 1.0 / 3.0
"""How much a radar's range-rate row counts in the models' weights, against 1 for each position
row. The models differ in how hard the target accelerates, in every direction alike; the
range-rate sees the acceleration along the line of sight only, and measured to a tenth of a m/s
the quiet model's tight prediction of it won about a nat a scan whenever the target did not
accelerate *along* the beam. A target accelerating across it then stayed in the quiet model and
lagged 8-10 m/s for seconds: with range-rate its positions were worse than without (an outside
test, docs/evaluation.md). One of the three directions the models' noise spans: a third."""


@dataclass(frozen=True)
class ImmParams:
    accel_h_mps2: tuple[float, ...] = (0.7, 6.0)
    accel_v_mps2: tuple[float, ...] = (0.3, 2.0)
    switch_rate_hz: float = 0.2  # how often a target changes its manner of flight
    initial_mode: tuple[float, ...] = (0.5, 0.5)
    turn_rate_rad_s: tuple[float, ...] = ()  # each model's coordinated turn (`turn_matrix`); () all 0
    carry_accel_mps2: tuple[float, float] | None = None  # `carry_noise`; None: the liveliest model's

    @property
    def n_models(self) -> int:
        return len(self.accel_h_mps2)

    @property
    def turns(self) -> FloatArray:
        return np.asarray(self.turn_rate_rad_s or (0.0,) * self.n_models, dtype=np.float64)

    @property
    def carry_noise(self) -> tuple[float, float]:
        """(horizontal, vertical) acceleration noise of carrying an estimate to another time with
        one constant-velocity model (gating a late measurement, `late`): it must cover whatever
        the target did in between, turns included, which a straight-line carry does not model."""
        return self.carry_accel_mps2 or (max(self.accel_h_mps2), max(self.accel_v_mps2))


def default_params(params: FusionParams) -> ImmParams:
    """A quiet constant-velocity model for cruise and hover (a quarter of the configured process
    noise) and a coordinated turn each way at `turn_rate_dps` with the configured noise (docs/
    architecture.md, Motion). Estimates are carried in time (`carry_noise`) with twice that noise:
    a turn at `turn_rate_dps` is itself an acceleration of about the configured noise."""
    a_h, a_v = params.process_accel_mps2, params.process_accel_vertical_mps2
    omega = math.radians(params.turn_rate_dps)
    return ImmParams(
        accel_h_mps2=(a_h / 4.0, a_h, a_h),
        accel_v_mps2=(a_v / 4.0, a_v, a_v),
        initial_mode=(1.0 / 3.0,) * 3,
        turn_rate_rad_s=(0.0, omega, -omega),
        carry_accel_mps2=(2.0 * a_h, 2.0 * a_v),
    )


def _transition(dt: FloatArray, n: int, rate: float) -> FloatArray:
    stay = np.exp(-rate * np.abs(dt))
    pi = np.empty((dt.shape[0], n, n))
    pi[:] = ((1.0 - stay) / max(n - 1, 1))[:, None, None]
    idx = np.arange(n)
    pi[:, idx, idx] = stay[:, None]
    return pi


def _model_noise(dt: FloatArray, params: ImmParams) -> tuple[FloatArray, FloatArray]:
    """F (K,R,6,6) and Q (K,R,6,6) for every track and model: one white-acceleration pattern per
    track, scaled by each model's axis variances."""
    return turn_matrix(dt, params.turns), white_accel_pattern(dt)[:, None] * _axis_noises(params)[None]


@functools.lru_cache(maxsize=32)
def _common_step(dt: float, params: ImmParams) -> tuple[FloatArray, FloatArray, FloatArray]:
    """F (R,6,6), Q (R,6,6) and the mode transition (R,R) of one dt shared by every track (a radar's
    frame interval), kept for the next frame: a steady radar repeats the same few intervals (its
    times differ by the same float steps), and these are a dozen small constructions per frame."""
    one = np.array([dt])
    f, q = turn_matrix(one, params.turns)[0], white_accel_pattern(one)[0][None] * _axis_noises(params)
    pi = _transition(one, params.n_models, params.switch_rate_hz)[0]
    for a in (f, q, pi):
        a.setflags(write=False)
    return f, q, pi


@functools.cache
def _axis_noises(params: ImmParams) -> FloatArray:
    """(R,6,6) every model's `axis_noise` (fixed for a tracker's life)."""
    noise = np.stack(
        [axis_noise(ah, av) for ah, av in zip(params.accel_h_mps2, params.accel_v_mps2, strict=True)]
    )
    noise.setflags(write=False)
    return noise


def _predict_models(x: FloatArray, p: FloatArray, f: FloatArray) -> tuple[FloatArray, FloatArray]:
    """x Fᵀ (K,R,6) and F P Fᵀ (K,R,6,6) for each model's F (R,6,6), as one product per model over
    all tracks' rows ((R, K·6, 6) stacks: numpy's broadcast matmul of many small matrices is
    several times slower), with F P Fᵀ = (P Fᵀ)ᵀ Fᵀ (P symmetric)."""
    k, n = x.shape[0], x.shape[1]
    ft = f.transpose(0, 2, 1)
    pft = p.transpose(1, 0, 2, 3).reshape(n, k * STATE_DIM, STATE_DIM) @ ft
    pft = pft.reshape(n, k, STATE_DIM, STATE_DIM).swapaxes(-1, -2).reshape(n, k * STATE_DIM, STATE_DIM)
    fpf = (pft @ ft).reshape(n, k, STATE_DIM, STATE_DIM).transpose(1, 0, 2, 3)
    return (x.transpose(1, 0, 2) @ ft).transpose(1, 0, 2), fpf


def mix_and_predict(table: TrackTable, slots: IndexArray, dt: FloatArray, params: ImmParams) -> None:
    """IMM interaction and prediction by dt (K,) ≥ 0 for the given slots, then moment matching."""
    if slots.size == 0:
        return
    mu = table.mu[slots]
    xm = table.xm[slots]
    pm = table.pm[slots]
    # Tracks are usually all predicted by one dt (every track was updated by the last scan): one
    # F, Q and transition for all of them then, broadcast, instead of a stack of identical ones.
    first = dt[:1]
    common = bool((dt == first).all())
    if common:
        f, q, pi = _common_step(float(first[0]), params)
        c = mu @ pi
    else:
        pi = _transition(dt, params.n_models, params.switch_rate_hz)
        c = np.einsum("ki,kij->kj", mu, pi)
    w = mu[:, :, None] * pi / np.maximum(c[:, None, :], 1e-300)
    # Σ_i w_ij (P_i + dx_ij dx_ijᵀ): the weighted covariances as one matrix product over i, the
    # spread of the means (`mixture_spread`) with each (track, j) a mixture of the same means.
    k, n = w.shape[0], w.shape[1]
    wt = w.transpose(0, 2, 1)  # (k, j, i)
    x0 = keep_speed(wt, xm[:, None], wt @ xm)
    p0 = (wt @ pm.reshape(k, n, STATE_DIM * STATE_DIM)).reshape(k, n, STATE_DIM, STATE_DIM)
    p0 += mixture_spread(wt, xm[:, None], x0)
    if common:
        xm, pm = _predict_models(x0, p0, f)
        pm = pm + q
    else:
        f, q = _model_noise(dt, params)
        xm = np.einsum("kjab,kjb->kja", f, x0)
        pm = f @ p0 @ f.transpose(0, 1, 3, 2) + q
    table.xm[slots], table.pm[slots], table.mu[slots] = xm, pm, c
    table.combine(slots, c, xm, pm)


def gate_quantities(
    table: TrackTable, slots: IndexArray, dt: FloatArray, model: MeasurementModel, params: ImmParams
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Predicted measurement (K,D), its Jacobian at the evaluation state (K,D,6), H P Hᵀ (K,D,D)
    and, for a radar measuring range-rate, the second-order part of the range-rate's predicted
    variance (K,) (`range_rate_curvature`, already in H P Hᵀ; `update` takes it too), with the
    tracks' combined estimates retrodicted by dt ≤ 0 where the measurement is older."""
    x_eval, p_eval = table.x[slots], table.p[slots]
    if dt.any():  # carried back (`carry_noise`)
        noise = axis_noise(*params.carry_noise)
        x_eval, p_eval = cv_predict(x_eval, p_eval, dt, noise)
    z_pred, h = model.predict(x_eval)
    hph = h @ p_eval @ h.transpose(0, 2, 1)
    rate_extra = None
    if isinstance(model, RadarModel) and model.range_rate:
        rate_extra = range_rate_curvature(x_eval, p_eval, model.pose)
        hph[:, 3, 3] += rate_extra
    return z_pred, h, hph, rate_extra


@dataclass(frozen=True, slots=True)
class ModelTerms:
    """What `update` and `mixture_cost` both ask of the models for pairs (track, measurement):
    each model's H P_j (A,D,R,6), the Cholesky factor L_j of its innovation covariance S_j
    (A,R,D,D) and its innovation ν − H (x_j − x) whitened by it, L_j⁻¹ ν_j (A,R,D)
    (`models.whiten`). Gating prices every pair at the tracks' time with them; the update of the
    pairs chosen takes them again (`take`) rather than computing them twice."""

    hp: FloatArray
    lower: FloatArray
    y_nu: FloatArray

    def take(self, pairs: IndexArray) -> ModelTerms:
        return ModelTerms(self.hp[pairs], self.lower[pairs], self.y_nu[pairs])


def model_terms(
    table: TrackTable,
    slots: IndexArray,
    nu: FloatArray,
    h: FloatArray,
    r: FloatArray,
    rate_extra: FloatArray | None,
) -> ModelTerms:
    """`ModelTerms` for measurements linearised at the tracks' combined estimates (pairs aligned;
    `rate_extra` added to a range-rate's noise)."""
    a, n_models, d = slots.shape[0], table.mu.shape[1], nu.shape[1]
    if rate_extra is not None:
        r = r.copy()
        r[:, 3, 3] += rate_extra
    pm = table.pm[slots]
    # H P_j and H P_j Hᵀ with each track's models side by side: batched products over tracks (a
    # broadcast one over (track, model) is slower).
    hp = (h @ pm.transpose(0, 2, 1, 3).reshape(a, STATE_DIM, n_models * STATE_DIM)).reshape(
        a, d, n_models, STATE_DIM
    )
    hph = (hp.reshape(a, d * n_models, STATE_DIM) @ h.swapaxes(1, 2)).reshape(a, d, n_models, d)
    s = hph.transpose(0, 2, 1, 3) + r[:, None]  # (A,R,D,D)
    nu_m = nu[:, None, :] - (table.xm[slots] - table.x[slots][:, None, :]) @ h.swapaxes(1, 2)
    lower = cholesky_lower(s.reshape(a * n_models, d, d))
    y_nu = forward_substitute(lower, nu_m.reshape(a * n_models, d, 1))
    return ModelTerms(hp, lower.reshape(a, n_models, d, d), y_nu.reshape(a, n_models, d))


def mixture_cost(
    table: TrackTable,
    slots: IndexArray,
    nu: FloatArray,
    h: FloatArray,
    r: FloatArray,
    rate_extra: FloatArray | None = None,
) -> tuple[FloatArray, ModelTerms]:
    """−2 ln of the IMM's likelihood of each pair's measurement, Σ_j μ_j N(ν_j; 0, S_j), less
    D ln 2π (the scale of d² + ln|S|): pairs aligned, `slots` (P,) the tracks at the measurement's
    time, `nu` (P,D) the innovations at their combined estimates and `h` (P,D,6) the Jacobians
    there (each model's innovation is ν − H (x_j − x), as `update` takes it), `r` (P,D,D); and
    the pairs' `ModelTerms`, for the update of those chosen.

    The models' moment-matched Gaussian is wider than each model and centred between them: after
    a false alarm pulled the lively models aside, a hovering drone's plot where the quiet model
    still waits is likelier than the false alarm beside it, though the matched Gaussian prefers
    the false alarm (an outside test at 1 Hz in clutter: tracks left their drones that way)."""
    terms = model_terms(table, slots, nu, h, r, rate_extra)
    p = slots.shape[0]
    if p == 0:
        return np.zeros(0), terms
    d2 = np.einsum("pmi,pmi->pm", terms.y_nu, terms.y_nu)
    logdet = log_det_rows(terms.lower).sum(axis=2)
    log_mu = np.log(np.maximum(table.mu[slots], 1e-300))
    weighted = log_mu - 0.5 * (d2 + logdet)
    top = weighted.max(axis=1)
    cost = -2.0 * (top + np.log(np.exp(weighted - top[:, None]).sum(axis=1)))
    return np.asarray(cost, dtype=np.float64), terms


def miss_density(
    holding: npt.NDArray[np.bool_], pd: float, gate_probability: float, clutter: float | FloatArray
) -> FloatArray:
    """`update`'s (1 − Pd·Pg)·λ / Pd for the plot of each track that holds its target (an
    established track with no evidence of absence), 0 for the others'. A young track is itself the
    hypothesis that its plots are a target's (its score tests it); a track already losing its
    target takes a plot whole, so that it either finds the target again or is soon shown gone: a
    lost track that took false alarms in part kept a wide gate, took one nearly every scan and
    stayed published twice as long (docs/evaluation.md, "Radars at 1 Hz in clutter")."""
    return np.where(holding, (1.0 - pd * gate_probability) / pd * np.asarray(clutter), 0.0)


def model_gains(
    table: TrackTable,
    slots: IndexArray,
    nu: FloatArray,
    h: FloatArray,
    r: FloatArray,
    rate_extra: FloatArray | None,
    terms: ModelTerms | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each model's Kalman correction K_j ν_j (A,R,6), the covariance it takes, K_j S_j K_jᵀ
    (A,R,6,6), and its log-likelihood of the measurement (A,R), the range-rate row counted at
    `RANGE_RATE_EVIDENCE`, for pairs (track, measurement) as `update` takes them; what the
    single update and the soft (JPDA) one both apply, each with its own association weights;
    `terms` the pairs' `ModelTerms` where gating computed them."""
    a, n_models, d = slots.shape[0], table.mu.shape[1], nu.shape[1]
    if terms is None:
        terms = model_terms(table, slots, nu, h, r, rate_extra)
    # Whitened by S_j (`models.whiten`): the gain applied is (W H P)ᵀ W ν, the covariance lost
    # (W H P)ᵀ (W H P).
    lower = terms.lower.reshape(a * n_models, d, d)
    y_hp = forward_substitute(lower, terms.hp.transpose(0, 2, 1, 3).reshape(a * n_models, d, STATE_DIM))
    y_nu = terms.y_nu.reshape(a * n_models, d)
    logdet = log_det_rows(lower)
    dx = np.einsum("kdi,kd->ki", y_hp, y_nu).reshape(a, n_models, STATE_DIM)
    taken = (y_hp.swapaxes(1, 2) @ y_hp).reshape(a, n_models, STATE_DIM, STATE_DIM)
    # Each row's evidence on the models (whitened in order, row i given the rows before it); a
    # range-rate's counts RANGE_RATE_EVIDENCE of a position row's.
    evidence = y_nu * y_nu + logdet + np.log(2.0 * np.pi)  # (A·R, D)
    if rate_extra is not None:
        evidence[:, 3] *= RANGE_RATE_EVIDENCE
    return dx, taken, (-0.5 * evidence.sum(axis=1)).reshape(a, n_models)


def update(
    table: TrackTable,
    slots: IndexArray,
    nu: FloatArray,
    h: FloatArray,
    r: FloatArray,
    rate_extra: FloatArray | None = None,
    miss: FloatArray | None = None,
    terms: ModelTerms | None = None,
) -> None:
    """Fuse one measurement taken at the tracks' current time into each given track (pairs
    aligned), model by model, then re-weigh the models by how well each predicted it. Older
    measurements go to `late`.

    `miss` (A,): (1 − Pd·Pg)·λ / Pd, the density of "the target was missed and this plot is a
    false alarm" at the plot, over Pd (None, 0 or not finite: the plot is the target's;
    `miss_density`). Each model then weighs the plot against that alternative (IMM-PDA,
    Bar-Shalom): a model that predicted it poorly takes it in part (β_j = Pd·g_j / (Pd·g_j +
    (1 − Pd·Pg)·λ)) and its likelihood is that of either hypothesis. So in clutter a false alarm
    beside a hovering drone the radar missed moves the quiet model little while the turning ones
    take it; the drone's next plot finds the quiet model where it was, and the track comes back
    instead of flying off with the false alarms (docs/evaluation.md, "Radars at 1 Hz in
    clutter").

    The measurement is linearised once per track, at its combined estimate x, as gating did:
    `nu` (A,D) is the innovation there and `h` (A,D,6) the Jacobian, so each model's innovation
    is ν − H (x_j − x), the first-order expansion of h(x_j). The models' means lie within their
    spread of x, where the measurement function is as good as linear (a few metres against the
    hundreds of a radar's range), and gating's prediction serves every model instead of one
    more evaluation of h per model. `rate_extra` (gating's, per track; given for a radar measuring
    range-rate, row 3): the second-order part of the range-rate's predicted variance, which the
    first-order update must count as noise. The models' weights count that row's evidence
    `RANGE_RATE_EVIDENCE`. `terms`: the pairs' `ModelTerms` where gating computed them."""
    if slots.shape[0] == 0:
        return
    xm, pm = table.xm[slots], table.pm[slots]  # (A,R,6), (A,R,6,6)
    dx, taken, loglik = model_gains(table, slots, nu, h, r, rate_extra, terms)
    if miss is not None and np.any(miss > 0.0):
        # ln of the odds "missed, and a false alarm" against "this plot is the target's", the plot
        # weighed as the models' weights weigh it (a range-rate row at RANGE_RATE_EVIDENCE: else a
        # model that mispredicted the radial speed gained weight as "it was a false alarm"), its
        # density kept in the units of λ: the tempered row's missing 1 − κ of a density is the
        # radar's own noise density there (so the odds do not depend on the unit of speed).
        density = loglik
        if rate_extra is not None:
            noise = r[:, 3, 3] + rate_extra  # the row's noise, as `model_terms` counts it
            density = loglik - 0.5 * (1.0 - RANGE_RATE_EVIDENCE) * np.log(2.0 * np.pi * noise)[:, None]
        with np.errstate(divide="ignore"):
            odds = np.log(np.where(np.isfinite(miss), miss, 0.0))[:, None] - density  # −inf: no alternative
        beta = 1.0 / (1.0 + np.exp(np.minimum(odds, 700.0)))
        loglik = loglik + np.logaddexp(0.0, odds)
        spread = (beta * (1.0 - beta))[..., None, None] * (dx[..., :, None] * dx[..., None, :])
        dx = beta[..., None] * dx
        taken = beta[..., None, None] * taken - spread
    logmu = np.log(np.maximum(table.mu[slots], 1e-12)) + loglik
    logmu -= logmu.max(axis=1, keepdims=True)
    mu = np.exp(logmu)
    mu /= mu.sum(axis=1, keepdims=True)
    table.store_models(slots, mu, xm + dx, pm - taken)
