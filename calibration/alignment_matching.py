"""Matching a sensor's measurements to the reference truth: the reference trajectory as a smooth
function of time, the sensor's measurements as arrays, the measurement model that predicts what
the sensor should have reported for candidate parameters, and the association (coarse time-offset
search with an azimuth histogram, one measurement per radar scan, residual statistics).

Kept apart from the solve (`cuas_node.calibration.alignment`) because association decides *which*
measurements are evidence; it must be robust to clutter and a large initial yaw error before any
least squares can be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.interpolate import CubicSpline

from cuas_node.calibration.alignment_options import AlignmentError, AlignmentOptions, BoolArray, FloatArray
from cuas_node.calibration.io import ReferenceTrack
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import AcousticBearing, AnyMeasurement, RadarDetection, RfPresence
from cuas_node.kernel.pose import cartesian_to_spherical, rotation_sensor_to_enu, wrap


class ReferenceTrajectory:
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
class Observations:
    """One sensor's measurements as parallel arrays (angles in radians, times from the reference
    epoch), with what the sensor kind can tell: elevation, range, and sound's travel time."""

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

    def take(self, idx: npt.NDArray[np.intp]) -> Observations:
        """The subset at `idx` (the gated measurements of one fit pass)."""
        return Observations(
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


def collect_observations(measurements: Sequence[AnyMeasurement], sensor_id: str) -> tuple[str, Observations]:
    """(sensor type, observations) of `sensor_id`: radar detections, else acoustic bearings, else
    RF bearings, whichever the capture holds first in that order."""
    mine = [m for m in measurements if m.sensor_id == sensor_id]
    radar = [m for m in mine if isinstance(m, RadarDetection)]
    acoustic = [m for m in mine if isinstance(m, AcousticBearing)]
    rf = [m for m in mine if isinstance(m, RfPresence) and m.bearing_rad is not None]
    if radar:
        el_sig = np.array([m.sigma_el_rad for m in radar])
        return "radar", Observations(
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
        return "acoustic", Observations(
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
        return "rf-bearing", Observations(
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


class ObservationModel:
    """What the sensor should have reported, given the reference and candidate parameters (PARAMS):
    both the coarse search and the least-squares residuals go through this one prediction."""

    def __init__(
        self, ref: ReferenceTrajectory, offset: FloatArray, options: AlignmentOptions, data: Observations
    ) -> None:
        self.ref = ref
        self.offset = offset
        self.opt = options
        self.data = data

    def predict(
        self, theta: FloatArray, d: Observations
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
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

    def residuals(self, theta: FloatArray, d: Observations) -> FloatArray:
        """Normalised residuals stacked as [az, el?, range?] blocks of len(d) each."""
        r_pred, az, el, r = self.predict(theta, d)
        s_ref = self.ref.sigma_m
        horiz = np.maximum(r * np.cos(el), 1.0)
        blocks = [wrap(d.az - az) / np.hypot(d.s_az, s_ref / horiz)]
        if d.has_el:
            blocks.append((d.el - el) / np.hypot(d.s_el, s_ref / np.maximum(r, 1.0)))
        if d.has_range:
            blocks.append((d.rng - r_pred) / np.hypot(d.s_rng, s_ref))
        return np.concatenate(blocks)

    def per_measurement(self, theta: FloatArray, d: Observations) -> FloatArray:
        """Largest |normalised residual| of each measurement (for gating)."""
        res = self.residuals(theta, d).reshape(-1, d.t.shape[0])
        return np.asarray(np.abs(res).max(axis=0), dtype=np.float64)


def coarse_search(
    model: ObservationModel, d: Observations, theta0: FloatArray
) -> tuple[float, float, BoolArray]:
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
        a = wrap(d.az - az)[ok]
        if a.size == 0:
            continue
        # Count residuals within ±gate of each 1° bin (circular), pick the densest direction.
        diff = wrap(a[None, :] - bins[:, None])
        counts = (np.abs(diff) < gate).sum(axis=1)
        k = int(np.argmax(counts))
        key = (int(counts[k]), -abs(float(step)))
        if best is None or key > (best[0], best[1]):
            near = a[np.abs(wrap(a - bins[k])) < gate]
            shift = float(bins[k] + np.median(wrap(near - bins[k])))
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
    mask = model.ref.valid(d.t + theta[3]) & (np.abs(wrap(d.az - az)) < gate)
    if d.has_range:
        mask &= np.abs(d.rng - r_pred) < opt.gate_range_m + 0.03 * r_pred
    return step, float(theta[0]), mask


def best_per_scan(t: FloatArray, score: FloatArray, mask: BoolArray) -> BoolArray:
    """At most one measurement per capture time (a radar frame): the best-fitting one."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return mask
    order = idx[np.lexsort((score[idx], t[idx]))]
    first = np.r_[True, t[order][1:] != t[order][:-1]]
    out = np.zeros_like(mask)
    out[order[first]] = True
    return out


def residual_stats(model: ObservationModel, theta: FloatArray, d: Observations) -> dict[str, float]:
    """RMS, median and 95th percentile residuals for the report's before/after comparison."""
    r_pred, az, el, _ = model.predict(theta, d)
    da = np.degrees(wrap(d.az - az))
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
