"""Sensor alignment: a sensor's yaw, pitch and roll and its time offset from a reference target.

A reference target whose true position is known over time (a Remote ID drone flown around the
node, or a GNSS track log of a walked or driven target) is seen by the sensor. For every
measurement we predict, from the reference position at `t_capture + time_offset` (minus the sound's
travel time for an acoustic array) and the candidate mount rotation, what the sensor should have
reported, and solve for the parameters with robust non-linear least squares
(`scipy.optimize.least_squares`, soft-L1 loss, residuals normalised by each measurement's own
sigma combined with the reference's position error). Radar ranges enter too, with a range bias as a
nuisance parameter: range does not depend on the rotation, so radial motion pins the time offset
independently of yaw.

Why refuse poorly conditioned results: a time offset moves the reference along its path, which a
target flying a circle at constant speed turns into a pure azimuth shift, i.e. a yaw error; a
target that hovers says nothing about time; a straight radial line says nothing about the rotation
about that line. Least squares still returns numbers in those cases, and a technician would paste
them into the config. So we compute the parameters' covariance from the Jacobian at the solution,
and refuse (with the reason and what to fly instead) when a standard deviation is above its limit,
two parameters are nearly interchangeable, or the reference covered too narrow a sector.

Association: the capture holds clutter, false alarms and other objects. Candidates are first
chosen with rotation-independent evidence (range for a radar) and a coarse search over the time
offset with an azimuth histogram (robust to a large initial yaw error), then re-gated at
`gate_sigma` after each fit.

Layout: the vocabulary (options, initial mount, errors) is in `cuas_node.calibration.alignment_options`,
association and the measurement model in `cuas_node.calibration.alignment_matching`, the covariance and the
refusals in `cuas_node.calibration.alignment_conditioning`; this module holds the solve and the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from cuas_node.calibration.alignment_conditioning import (
    azimuth_span_deg,
    conditioning_refusals,
    max_offdiag,
    parameter_covariance,
)
from cuas_node.calibration.alignment_matching import (
    ObservationModel,
    Observations,
    ReferenceTrajectory,
    best_per_scan,
    coarse_search,
    collect_observations,
    residual_stats,
)
from cuas_node.calibration.alignment_options import (
    PARAMS,
    SPEED_OF_SOUND_MPS,
    AlignmentError,
    AlignmentOptions,
    BoolArray,
    FloatArray,
    InitialMount,
)
from cuas_node.calibration.io import ReferenceTrack
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import AnyMeasurement
from cuas_node.kernel.pose import rotation_sensor_to_enu, spherical_to_cartesian, wrap

__all__ = [
    "PARAMS",
    "SPEED_OF_SOUND_MPS",
    "AlignmentError",
    "AlignmentOptions",
    "AlignmentResult",
    "BoolArray",
    "FloatArray",
    "InitialMount",
    "align",
]

_X_SCALE = np.array([1.0, 1.0, 1.0, 0.05, 0.5])


@dataclass
class AlignmentResult:
    """The fit, its uncertainty and conditioning, the residuals before/after, and why (if) it is
    refused: everything the calibration TOML records and the technician decides on."""

    sensor_id: str
    sensor_type: str  # radar | acoustic | rf-bearing
    fitted: tuple[str, ...]
    values: dict[str, float]
    sigmas: dict[str, float]
    correlation: FloatArray  # among the fitted parameters
    condition_number: float
    residuals_before: dict[str, float]
    residuals_after: dict[str, float]
    n_candidates: int
    n_used: int
    az_span_deg: float
    duration_s: float
    refusals: list[str]
    initial: InitialMount
    plot: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.refusals

    def config_snippet(self) -> str:
        v, o = self.values, self.initial.offset_m
        mount = (
            f"mount = {{ yaw_deg = {v['yaw_deg']:.2f}, pitch_deg = {v['pitch_deg']:.2f}, "
            f"roll_deg = {v['roll_deg']:.2f}, offset_m = [{o[0]}, {o[1]}, {o[2]}] }}"
        )
        return f"{mount}\ntime_offset_s = {v['time_offset_s']:.3f}"

    def report(self) -> dict[str, Any]:
        """The calibration TOML's body (without the common header)."""
        max_corr = max_offdiag(self.correlation)
        return {
            "accepted": self.accepted,
            "refusals": list(self.refusals),
            "result": {k: round(v, 6) for k, v in self.values.items()},
            "sigma": {k: round(v, 6) if math.isfinite(v) else v for k, v in self.sigmas.items()},
            "fitted": list(self.fitted),
            "residuals": {
                "n_candidates": self.n_candidates,
                "n_used": self.n_used,
                "duration_s": round(self.duration_s, 3),
                "before": {k: round(v, 4) for k, v in self.residuals_before.items()},
                "after": {k: round(v, 4) for k, v in self.residuals_after.items()},
            },
            "conditioning": {
                "condition_number": self.condition_number,
                "max_abs_correlation": max_corr,
                "az_span_deg": round(self.az_span_deg, 2),
                "correlation": [[round(float(c), 4) for c in row] for row in self.correlation],
            },
            "config": {
                "mount": {
                    "yaw_deg": round(self.values["yaw_deg"], 3),
                    "pitch_deg": round(self.values["pitch_deg"], 3),
                    "roll_deg": round(self.values["roll_deg"], 3),
                    "offset_m": list(self.initial.offset_m),
                },
                "time_offset_s": round(self.values["time_offset_s"], 4),
            },
        }


def _parameters_to_fit(opt: AlignmentOptions, data: Observations) -> tuple[str, ...]:
    """`opt.fit` (in PARAMS order), else what the sensor kind can determine; never a range bias
    without ranges."""
    if opt.fit is not None:
        unknown = set(opt.fit) - set(PARAMS)
        if unknown:
            raise AlignmentError(f"unknown parameters to fit: {', '.join(sorted(unknown))}")
        fit = tuple(p for p in PARAMS if p in opt.fit)
    else:
        fit = ("yaw_deg",)
        if data.has_el:
            fit += ("pitch_deg", "roll_deg")
        fit += ("time_offset_s",)
        if data.has_range:
            fit += ("range_bias_m",)
    if not data.has_range:
        fit = tuple(p for p in fit if p != "range_bias_m")
    return fit


def _solve(
    model: ObservationModel,
    data: Observations,
    theta: FloatArray,
    free: np.ndarray[Any, np.dtype[np.intp]],
    mask: BoolArray,
    opt: AlignmentOptions,
) -> tuple[BoolArray, FloatArray, FloatArray]:
    """Robust least squares over the gated measurements, re-gating every candidate after each pass.

    Updates `theta` in place; returns the final inlier mask and the last Jacobian and residuals
    (empty if there were never enough measurements to fit)."""
    jac = np.zeros((0, free.size))
    fun = np.zeros(0)
    for _ in range(max(1, opt.iterations)):
        if mask.sum() < max(free.size + 1, 3):
            break
        d = data.take(np.flatnonzero(mask))

        def residual(x: FloatArray, d: Observations = d) -> FloatArray:
            full = theta.copy()
            full[free] = x
            return model.residuals(full, d)

        sol = least_squares(
            residual, theta[free], loss=opt.loss, f_scale=opt.f_scale, x_scale=_X_SCALE[free], method="trf"
        )
        theta[free] = sol.x
        jac, fun = sol.jac, sol.fun
        # Re-gate every candidate at the new solution.
        valid = model.ref.valid(data.t + theta[3])
        score = np.where(valid, model.per_measurement(theta, data), np.inf)
        mask = best_per_scan(data.t, score, valid & (score < opt.gate_sigma))
    return mask, jac, fun


def _plot_data(
    model: ObservationModel, theta0: FloatArray, theta: FloatArray, used: Observations
) -> dict[str, FloatArray]:
    """Azimuth residuals before/after over time and, with ranges, the measured positions in ENU."""
    _, az_b, _, _ = model.predict(theta0, used)
    r_a, az_a, _, _ = model.predict(theta, used)
    plot = {
        "t": used.t - used.t[0],
        "az_before_deg": np.degrees(wrap(used.az - az_b)),
        "az_after_deg": np.degrees(wrap(used.az - az_a)),
        "ref_enu": model.ref.enu,
    }
    if used.has_range:
        el = used.el if used.has_el else np.zeros_like(used.el)
        local = spherical_to_cartesian(used.rng, used.az, el)
        local_fixed = spherical_to_cartesian(used.rng - theta[4], used.az, el)
        rot0 = rotation_sensor_to_enu(*theta0[:3])
        rot1 = rotation_sensor_to_enu(*theta[:3])
        plot["meas_enu_before"] = local @ rot0.T + model.offset
        plot["meas_enu_after"] = local_fixed @ rot1.T + model.offset
        plot["range_after_m"] = used.rng - r_a
    return plot


def align(
    measurements: Sequence[AnyMeasurement],
    sensor_id: str,
    reference: ReferenceTrack,
    frame: LocalFrame,
    initial: InitialMount | None = None,
    options: AlignmentOptions | None = None,
) -> AlignmentResult:
    """Fit the mount rotation and time offset of `sensor_id` against `reference` (see module doc)."""
    opt = options or AlignmentOptions()
    init = initial or InitialMount()
    sensor_type, data = collect_observations(measurements, sensor_id)
    epoch = float(reference.t[0]) if len(reference) else 0.0
    data.t = data.t - epoch
    ref = ReferenceTrajectory(reference, frame, opt.max_reference_gap_s, epoch)
    model = ObservationModel(ref, np.asarray(init.offset_m, dtype=np.float64), opt, data)
    fit = _parameters_to_fit(opt, data)
    free = np.array([PARAMS.index(p) for p in fit], dtype=np.intp)
    theta0 = np.array([init.yaw_deg, init.pitch_deg, init.roll_deg, init.time_offset_s, 0.0])

    step, yaw_start, mask = coarse_search(model, data, theta0)
    theta = theta0.copy()
    theta[3] += step
    theta[0] = yaw_start
    if "time_offset_s" not in fit:
        theta[3] = theta0[3]
    if "yaw_deg" not in fit:
        theta[0] = theta0[0]
    n_candidates = int(model.ref.valid(data.t + theta[3]).sum())

    mask, jac, fun = _solve(model, data, theta, free, mask, opt)
    used = data.take(np.flatnonzero(mask))
    n_used = int(mask.sum())
    sigmas, corr, cond = parameter_covariance(jac, fun, fit)
    az_span = azimuth_span_deg(model, theta, used) if n_used else 0.0
    refusals = conditioning_refusals(
        opt, fit, n_used, sigmas, corr, cond, float(theta[3] - theta0[3]), az_span
    )

    before = residual_stats(model, theta0, used) if n_used else {}
    after = residual_stats(model, theta, used) if n_used else {}
    plot = _plot_data(model, theta0, theta, used) if n_used else {}
    values = dict(zip(PARAMS, (float(v) for v in theta), strict=True))
    values["yaw_deg"] = (values["yaw_deg"] + 180.0) % 360.0 - 180.0
    return AlignmentResult(
        sensor_id=sensor_id,
        sensor_type=sensor_type,
        fitted=fit,
        values=values,
        sigmas={p: sigmas[p] for p in fit},
        correlation=corr,
        condition_number=cond,
        residuals_before=before,
        residuals_after=after,
        n_candidates=n_candidates,
        n_used=n_used,
        az_span_deg=az_span,
        duration_s=float(used.t[-1] - used.t[0]) if n_used else 0.0,
        refusals=refusals,
        initial=init,
        plot=plot,
    )
