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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.interpolate import CubicSpline
from scipy.optimize import least_squares

from calibration.io import ReferenceTrack
from calibration.pose import cartesian_to_spherical, rotation_sensor_to_enu, spherical_to_cartesian
from node.geo import LocalFrame
from node.measurement import AcousticBearing, AnyMeasurement, RadarDetection, RfPresence

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
SPEED_OF_SOUND_MPS = 343.0
PARAMS = ("yaw_deg", "pitch_deg", "roll_deg", "time_offset_s", "range_bias_m")
_X_SCALE = np.array([1.0, 1.0, 1.0, 0.05, 0.5])


class AlignmentError(ValueError):
    """The inputs cannot give an alignment at all (no measurements of the sensor, no overlap, ...)."""


@dataclass(frozen=True, slots=True)
class AlignmentOptions:
    """Knobs of the fit and the acceptance limits (1-sigma) that decide whether it is refused.

    The defaults aim at the issue's requirement (yaw within 0.5°, time within 20 ms) with margin:
    a result is accepted only if its standard deviations are half of that or better."""

    fit: tuple[str, ...] | None = None  # parameter names (PARAMS); None: chosen from the sensor
    max_time_offset_s: float = 1.0  # search window around the configured time offset
    time_step_s: float = 0.02
    gate_deg: float = 10.0  # first association gate around the azimuth histogram's peak
    gate_range_m: float = 5.0  # plus 3 % of range
    gate_sigma: float = 5.0  # re-gating after each fit, in normalised residuals
    loss: str = "soft_l1"
    f_scale: float = 2.0
    iterations: int = 3
    max_sigma_yaw_deg: float = 0.25
    max_sigma_tilt_deg: float = 0.5
    max_sigma_time_s: float = 0.01
    max_sigma_range_bias_m: float = 0.5
    max_correlation: float = 0.98
    min_measurements: int = 30
    min_az_span_deg: float = 15.0
    max_reference_gap_s: float = 3.0
    speed_of_sound_mps: float = SPEED_OF_SOUND_MPS


@dataclass(frozen=True, slots=True)
class InitialMount:
    """What the config says today: the starting point, and the 'before' of the report."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    time_offset_s: float = 0.0


@dataclass
class AlignmentResult:
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
        max_corr = _max_offdiag(self.correlation)
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


def _max_offdiag(c: FloatArray) -> float:
    if c.shape[0] < 2:
        return 0.0
    off = np.abs(c - np.diag(np.diag(c)))
    return float(np.nanmax(off))


def _wrap(a: FloatArray) -> FloatArray:
    return np.asarray((a + math.pi) % (2 * math.pi) - math.pi, dtype=np.float64)


class _Reference:
    """The reference trajectory in node ENU as a smooth function of time, with its valid spans."""

    def __init__(self, track: ReferenceTrack, frame: LocalFrame, max_gap_s: float, epoch: float) -> None:
        if len(track) < 2:
            raise AlignmentError("the reference track has fewer than two points")
        # Times relative to an epoch: at 1.7e9 s a float64 resolves only 0.2 µs, which would swallow
        # the finite-difference steps of the time offset.
        t, keep = np.unique(track.t - epoch, return_index=True)
        enu = frame.to_enu(track.lat[keep], track.lon[keep], track.alt_m[keep])
        self.t = t
        self.enu = enu
        self.sigma_m = track.sigma_m
        self.max_gap_s = max_gap_s
        # A cubic spline follows turns between 1 Hz fixes far better than straight segments do.
        self.spline = CubicSpline(t, enu, axis=0) if t.shape[0] >= 4 else None

    def valid(self, t: FloatArray) -> BoolArray:
        inside = (t >= self.t[0]) & (t <= self.t[-1])
        i = np.clip(np.searchsorted(self.t, t), 1, self.t.shape[0] - 1)
        gap = self.t[i] - self.t[i - 1]
        return np.asarray(inside & (gap <= self.max_gap_s), dtype=np.bool_)

    def __call__(self, t: FloatArray) -> FloatArray:
        tc = np.clip(t, self.t[0], self.t[-1])
        if self.spline is not None:
            return np.asarray(self.spline(tc), dtype=np.float64)
        return np.stack([np.interp(tc, self.t, self.enu[:, k]) for k in range(3)], axis=-1)


@dataclass
class _Data:
    t: FloatArray
    az: FloatArray
    el: FloatArray
    rng: FloatArray
    s_az: FloatArray
    s_el: FloatArray
    s_rng: FloatArray
    has_el: bool
    has_range: bool
    acoustic: bool

    def take(self, idx: npt.NDArray[np.intp]) -> _Data:
        return _Data(
            self.t[idx],
            self.az[idx],
            self.el[idx],
            self.rng[idx],
            self.s_az[idx],
            self.s_el[idx],
            self.s_rng[idx],
            self.has_el,
            self.has_range,
            self.acoustic,
        )


def _collect(measurements: Sequence[AnyMeasurement], sensor_id: str) -> tuple[str, _Data]:
    mine = [m for m in measurements if m.sensor_id == sensor_id]
    radar = [m for m in mine if isinstance(m, RadarDetection)]
    acoustic = [m for m in mine if isinstance(m, AcousticBearing)]
    rf = [m for m in mine if isinstance(m, RfPresence) and m.bearing_rad is not None]
    if radar:
        el_sig = np.array([m.sigma_el_rad for m in radar])
        return "radar", _Data(
            np.array([m.t_capture for m in radar]),
            np.array([m.az_rad for m in radar]),
            np.array([m.el_rad for m in radar]),
            np.array([m.range_m for m in radar]),
            np.array([m.sigma_az_rad for m in radar]),
            el_sig,
            np.array([m.sigma_range_m for m in radar]),
            has_el=bool(np.median(el_sig) < math.radians(8.0)),  # an azimuth-only part reports 15°
            has_range=True,
            acoustic=False,
        )
    if acoustic:
        n = len(acoustic)
        return "acoustic", _Data(
            np.array([m.t_capture for m in acoustic]),
            np.array([m.az_rad for m in acoustic]),
            np.array([m.el_rad for m in acoustic]),
            np.full(n, np.nan),
            np.array([m.sigma_az_rad for m in acoustic]),
            np.array([m.sigma_el_rad for m in acoustic]),
            np.full(n, np.inf),
            has_el=True,
            has_range=False,
            acoustic=True,
        )
    if rf:
        n = len(rf)
        return "rf-bearing", _Data(
            np.array([m.t_capture for m in rf]),
            np.array([float(m.bearing_rad or 0.0) for m in rf]),
            np.zeros(n),
            np.full(n, np.nan),
            np.array([float(m.sigma_bearing_rad or math.radians(20.0)) for m in rf]),
            np.full(n, np.inf),
            np.full(n, np.inf),
            has_el=False,
            has_range=False,
            acoustic=False,
        )
    kinds = sorted({type(m).__name__ for m in mine})
    raise AlignmentError(
        f"no radar detections, acoustic bearings or RF bearings from sensor {sensor_id!r} in the capture"
        + (f" (it has: {', '.join(kinds)})" if kinds else "")
    )


class _Model:
    def __init__(self, ref: _Reference, offset: FloatArray, options: AlignmentOptions, data: _Data) -> None:
        self.ref = ref
        self.offset = offset
        self.opt = options
        self.data = data

    def predict(self, theta: FloatArray, d: _Data) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Predicted (range incl. bias, az, el) and the true range, for parameters theta (PARAMS)."""
        t = d.t + theta[3]
        p = self.ref(t)
        if d.acoustic:
            for _ in range(2):  # the sound left the target range/c before it was heard
                dist = np.linalg.norm(p - self.offset, axis=1)
                p = self.ref(t - dist / self.opt.speed_of_sound_mps)
        rot = rotation_sensor_to_enu(float(theta[0]), float(theta[1]), float(theta[2]))
        rel = (p - self.offset) @ rot
        r, az, el = cartesian_to_spherical(rel)
        return r + theta[4], az, el, r

    def residuals(self, theta: FloatArray, d: _Data) -> FloatArray:
        """Normalised residuals stacked as [az, el?, range?] blocks of len(d) each."""
        r_pred, az, el, r = self.predict(theta, d)
        s_ref = self.ref.sigma_m
        horiz = np.maximum(r * np.cos(el), 1.0)
        blocks = [_wrap(d.az - az) / np.hypot(d.s_az, s_ref / horiz)]
        if d.has_el:
            blocks.append((d.el - el) / np.hypot(d.s_el, s_ref / np.maximum(r, 1.0)))
        if d.has_range:
            blocks.append((d.rng - r_pred) / np.hypot(d.s_rng, s_ref))
        return np.concatenate(blocks)

    def per_measurement(self, theta: FloatArray, d: _Data) -> FloatArray:
        """Largest |normalised residual| of each measurement (for gating)."""
        res = self.residuals(theta, d).reshape(-1, d.t.shape[0])
        return np.asarray(np.abs(res).max(axis=0), dtype=np.float64)


def _coarse_search(model: _Model, d: _Data, theta0: FloatArray) -> tuple[float, float, BoolArray]:
    """(time offset, azimuth shift, first inlier mask) from a grid over the time offset with an
    azimuth-residual histogram: robust to clutter and to a yaw error of any size."""
    opt = model.opt
    steps = np.arange(-opt.max_time_offset_s, opt.max_time_offset_s + 1e-9, opt.time_step_s)
    best: tuple[int, float, float, float] | None = None  # count, -|step|, dt, shift
    bins = np.radians(np.arange(-180.0, 180.0, 1.0))
    gate = math.radians(opt.gate_deg)
    for step in steps:
        theta = theta0.copy()
        theta[3] += step
        if not model.ref.valid(d.t + theta[3]).any():
            continue
        valid = model.ref.valid(d.t + theta[3])
        r_pred, az, _, _ = model.predict(theta, d)
        ok = valid
        if d.has_range:
            ok = ok & (np.abs(d.rng - r_pred) < opt.gate_range_m + 0.03 * r_pred)
        a = _wrap(d.az - az)[ok]
        if a.size == 0:
            continue
        # Count residuals within ±gate of each 1° bin (circular), pick the densest direction.
        diff = _wrap(a[None, :] - bins[:, None])
        counts = (np.abs(diff) < gate).sum(axis=1)
        k = int(np.argmax(counts))
        key = (int(counts[k]), -abs(float(step)))
        if best is None or key > (best[0], best[1]):
            near = a[np.abs(_wrap(a - bins[k])) < gate]
            shift = float(bins[k] + np.median(_wrap(near - bins[k])))
            best = (key[0], key[1], float(step), shift)
    if best is None:
        raise AlignmentError(
            "the sensor's measurements and the reference track do not overlap in time "
            f"(within ±{opt.max_time_offset_s} s of the configured time offset)"
        )
    _, _, step, shift = best
    theta = theta0.copy()
    theta[3] += step
    theta[0] -= math.degrees(shift)  # a boresight turned right sees targets further left
    r_pred, az, _, _ = model.predict(theta, d)
    mask = model.ref.valid(d.t + theta[3]) & (np.abs(_wrap(d.az - az)) < gate)
    if d.has_range:
        mask &= np.abs(d.rng - r_pred) < opt.gate_range_m + 0.03 * r_pred
    return step, float(theta[0]), mask


def _one_per_scan(t: FloatArray, score: FloatArray, mask: BoolArray) -> BoolArray:
    """At most one measurement per capture time (a radar frame): the best-fitting one."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return mask
    order = idx[np.lexsort((score[idx], t[idx]))]
    first = np.r_[True, t[order][1:] != t[order][:-1]]
    out = np.zeros_like(mask)
    out[order[first]] = True
    return out


def _stats(model: _Model, theta: FloatArray, d: _Data) -> dict[str, float]:
    r_pred, az, el, _ = model.predict(theta, d)
    da = np.degrees(_wrap(d.az - az))
    out = {
        "az_rms_deg": float(np.sqrt(np.mean(da**2))),
        "az_median_deg": float(np.median(da)),
        "az_p95_abs_deg": float(np.percentile(np.abs(da), 95)),
    }
    if d.has_el:
        de = np.degrees(d.el - el)
        out |= {"el_rms_deg": float(np.sqrt(np.mean(de**2))), "el_median_deg": float(np.median(de))}
    if d.has_range:
        dr = d.rng - r_pred
        out |= {"range_rms_m": float(np.sqrt(np.mean(dr**2))), "range_median_m": float(np.median(dr))}
    return out


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
    sensor_type, data = _collect(measurements, sensor_id)
    epoch = float(reference.t[0]) if len(reference) else 0.0
    data.t = data.t - epoch
    ref = _Reference(reference, frame, opt.max_reference_gap_s, epoch)
    model = _Model(ref, np.asarray(init.offset_m, dtype=np.float64), opt, data)
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
    free = np.array([PARAMS.index(p) for p in fit], dtype=np.intp)
    theta0 = np.array([init.yaw_deg, init.pitch_deg, init.roll_deg, init.time_offset_s, 0.0])

    step, yaw_start, mask = _coarse_search(model, data, theta0)
    theta = theta0.copy()
    theta[3] += step
    theta[0] = yaw_start
    if "time_offset_s" not in fit:
        theta[3] = theta0[3]
    if "yaw_deg" not in fit:
        theta[0] = theta0[0]
    n_candidates = int(model.ref.valid(data.t + theta[3]).sum())

    jac = np.zeros((0, free.size))
    fun = np.zeros(0)
    for _ in range(max(1, opt.iterations)):
        if mask.sum() < max(free.size + 1, 3):
            break
        d = data.take(np.flatnonzero(mask))

        def residual(x: FloatArray, d: _Data = d) -> FloatArray:
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
        mask = _one_per_scan(data.t, score, valid & (score < opt.gate_sigma))

    used = data.take(np.flatnonzero(mask))
    refusals: list[str] = []
    n_used = int(mask.sum())
    if n_used < opt.min_measurements:
        refusals.append(
            f"only {n_used} measurements matched the reference (need {opt.min_measurements}): "
            "is the reference target in the sensor's coverage, and are the clocks within "
            f"±{opt.max_time_offset_s} s?"
        )

    # Covariance of the fitted parameters from the (loss-weighted) Jacobian at the solution.
    sigmas = dict.fromkeys(PARAMS, 0.0)
    corr = np.eye(free.size)
    cond = math.inf
    if jac.shape[0] > free.size:
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
            std = np.full(free.size, math.inf)
            corr = np.full((free.size, free.size), np.nan)
            np.fill_diagonal(corr, 1.0)
        for k, p in enumerate(fit):
            sigmas[p] = float(std[k])
    else:
        for p in fit:
            sigmas[p] = math.inf

    limits = {
        "yaw_deg": opt.max_sigma_yaw_deg,
        "pitch_deg": opt.max_sigma_tilt_deg,
        "roll_deg": opt.max_sigma_tilt_deg,
        "time_offset_s": opt.max_sigma_time_s,
        "range_bias_m": opt.max_sigma_range_bias_m,
    }
    advice = {
        "yaw_deg": "fly across the field of view at several ranges",
        "pitch_deg": "fly at several heights",
        "roll_deg": "fly at several heights on both sides of boresight",
        "time_offset_s": "fly towards and away from the sensor and cross its view in both directions",
        "range_bias_m": "fly at several ranges",
    }
    for p in fit:
        if not sigmas[p] <= limits[p]:
            refusals.append(
                f"{p} is poorly determined (1-sigma {sigmas[p]:.3g}, limit {limits[p]:g}): {advice[p]}"
            )
    if math.isfinite(cond):
        max_corr = _max_offdiag(corr)
        if max_corr > opt.max_correlation:
            i, j = np.unravel_index(int(np.nanargmax(np.abs(corr - np.eye(free.size)))), corr.shape)
            refusals.append(
                f"{fit[i]} and {fit[j]} cannot be told apart (correlation {corr[i, j]:+.3f}): "
                "the trajectory must change direction (e.g. cross the view both ways, fly in and out)"
            )
    else:
        refusals.append("the problem is singular: the trajectory cannot determine every parameter")
    if "time_offset_s" in fit and abs(theta[3] - theta0[3]) >= opt.max_time_offset_s - opt.time_step_s:
        refusals.append("the time offset is at the edge of the search window (--max-time-offset)")

    az_span = 0.0
    if n_used:
        _, az_used, _, _ = model.predict(theta, used)
        centre = float(np.angle(np.mean(np.exp(1j * az_used))))
        rel = np.degrees(_wrap(az_used - centre))
        az_span = float(np.percentile(rel, 95) - np.percentile(rel, 5))
    if n_used and az_span < opt.min_az_span_deg:
        refusals.append(
            f"the reference covered only {az_span:.1f}° of azimuth (need {opt.min_az_span_deg:g}°): "
            "fly across the sensor's field of view, not along one line of sight"
        )

    before = _stats(model, theta0, used) if n_used else {}
    after = _stats(model, theta, used) if n_used else {}
    plot: dict[str, FloatArray] = {}
    if n_used:
        _, az_b, _, _ = model.predict(theta0, used)
        r_a, az_a, _, _ = model.predict(theta, used)
        plot = {
            "t": used.t - used.t[0],
            "az_before_deg": np.degrees(_wrap(used.az - az_b)),
            "az_after_deg": np.degrees(_wrap(used.az - az_a)),
            "ref_enu": ref.enu,
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
