"""Conditioning checks of an alignment fit: the fitted parameters' covariance from the Jacobian at
the solution, the azimuth sector the reference covered, and the refusals that follow.

Why refuse at all: least squares returns numbers even when the trajectory cannot separate the
parameters (a circle flown one way turns a time offset into a yaw error; a hover says nothing
about time; a radial line says nothing about the rotation about it), and a technician would paste
them into the config. Each refusal says what to fly instead.
"""

from __future__ import annotations

import math

import numpy as np

from cuas_node.calibration.alignment_matching import ObservationModel, Observations
from cuas_node.calibration.alignment_options import PARAMS, AlignmentOptions, FloatArray
from cuas_node.kernel.pose import wrap

_ADVICE = {
    "yaw_deg": "fly across the field of view at several ranges",
    "pitch_deg": "fly at several heights",
    "roll_deg": "fly at several heights on both sides of boresight",
    "time_offset_s": "fly towards and away from the sensor and cross its view in both directions",
    "range_bias_m": "fly at several ranges",
}


def max_offdiag(c: FloatArray) -> float:
    """Largest |correlation| between two different parameters (0 with a single parameter)."""
    if c.shape[0] < 2:
        return 0.0
    off = np.abs(c - np.diag(np.diag(c)))
    return float(np.nanmax(off))


def parameter_covariance(
    jac: FloatArray, fun: FloatArray, fit: tuple[str, ...]
) -> tuple[dict[str, float], FloatArray, float]:
    """(1-sigma of every PARAM, correlation among the fitted ones, condition number) from the
    (loss-weighted) Jacobian at the solution, scaled by a robust estimate of the residual spread.

    Unfitted parameters get sigma 0; an unusable Jacobian gives infinite sigmas and cond."""
    n_free = len(fit)
    sigmas = dict.fromkeys(PARAMS, 0.0)
    corr = np.eye(n_free)
    cond = math.inf
    if jac.shape[0] > n_free:
        info = jac.T @ jac
        scale = np.sqrt(np.maximum(np.diag(info), 1e-300))
        normed = info / np.outer(scale, scale)
        w = np.linalg.eigvalsh(normed)
        cond = float(w[-1] / w[0]) if w[0] > 1e-12 * w[-1] else math.inf
        s2 = (1.4826 * float(np.median(np.abs(fun)))) ** 2 if fun.size else 1.0
        if math.isfinite(cond) and np.all(np.diag(info) > 1e-18):
            cov = np.linalg.inv(normed) / np.outer(scale, scale) * s2
            std = np.sqrt(np.maximum(np.diag(cov), 0.0))
            corr = cov / np.outer(std, std)
        else:
            std = np.full(n_free, math.inf)
            corr = np.full((n_free, n_free), np.nan)
            np.fill_diagonal(corr, 1.0)
        for k, p in enumerate(fit):
            sigmas[p] = float(std[k])
    else:
        for p in fit:
            sigmas[p] = math.inf
    return sigmas, corr, cond


def azimuth_span_deg(model: ObservationModel, theta: FloatArray, used: Observations) -> float:
    """5-95 % spread of the predicted azimuths around their circular mean: how wide a sector the
    reference covered (a single line of sight cannot determine the rotation)."""
    _, az_used, _, _ = model.predict(theta, used)
    centre = float(np.angle(np.mean(np.exp(1j * az_used))))
    rel = np.degrees(wrap(az_used - centre))
    return float(np.percentile(rel, 95) - np.percentile(rel, 5))


def conditioning_refusals(
    opt: AlignmentOptions,
    fit: tuple[str, ...],
    n_used: int,
    sigmas: dict[str, float],
    corr: FloatArray,
    cond: float,
    time_offset_shift_s: float,
    az_span_deg: float,
) -> list[str]:
    """Every reason to refuse the fit, in a fixed order: too few matches, a parameter poorly
    determined, two parameters interchangeable (or a singular problem), a time offset at the edge
    of the search window, too narrow a sector."""
    refusals: list[str] = []
    if n_used < opt.min_measurements:
        refusals.append(
            f"only {n_used} measurements matched the reference (need {opt.min_measurements}): "
            "is the reference target in the sensor's coverage, and are the clocks within "
            f"±{opt.max_time_offset_s} s?"
        )
    limits = {
        "yaw_deg": opt.max_sigma_yaw_deg,
        "pitch_deg": opt.max_sigma_tilt_deg,
        "roll_deg": opt.max_sigma_tilt_deg,
        "time_offset_s": opt.max_sigma_time_s,
        "range_bias_m": opt.max_sigma_range_bias_m,
    }
    for p in fit:
        if not sigmas[p] <= limits[p]:
            refusals.append(
                f"{p} is poorly determined (1-sigma {sigmas[p]:.3g}, limit {limits[p]:g}): {_ADVICE[p]}"
            )
    if math.isfinite(cond):
        max_corr = max_offdiag(corr)
        if max_corr > opt.max_correlation:
            i, j = np.unravel_index(int(np.nanargmax(np.abs(corr - np.eye(len(fit))))), corr.shape)
            refusals.append(
                f"{fit[i]} and {fit[j]} cannot be told apart (correlation {corr[i, j]:+.3f}): "
                "the trajectory must change direction (e.g. cross the view both ways, fly in and out)"
            )
    else:
        refusals.append("the problem is singular: the trajectory cannot determine every parameter")
    if "time_offset_s" in fit and abs(time_offset_shift_s) >= opt.max_time_offset_s - opt.time_step_s:
        refusals.append("the time offset is at the edge of the search window (--max-time-offset)")
    if n_used and az_span_deg < opt.min_az_span_deg:
        refusals.append(
            f"the reference covered only {az_span_deg:.1f}° of azimuth (need {opt.min_az_span_deg:g}°): "
            "fly across the sensor's field of view, not along one line of sight"
        )
    return refusals
