"""Measurement models for fusion: h(x), its analytic Jacobian, innovation and initiation.

Every model works on stacked states (N,6) = [e, n, u, ve, vn, vu] in the node's ENU frame, so the
tracker can gate and update any sensor with the same batched code. A model knows its sensor's
calibrated pose; measurements arrive in the sensor's own frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.models import (
    STATE_DIM,
    diagonal_covariance,
    radar_predict,
    radar_to_state,
    velocity_prior,
    wrap_angle,
)
from cuas_node.fusion.params import BearingSensor, RadarSensor
from cuas_node.fusion.reflectors import SiteReflectors
from cuas_node.kernel.pose import Pose, cartesian_to_spherical, wrap

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Coverage:
    """Where a sensor can see: range interval and half-widths of its field of view (sensor frame).
    A target closer than `min_range_m` (a radar's blind zone) is out of view: not a miss."""

    max_range_m: float
    fov_az_rad: float = math.pi
    fov_el_rad: float = math.pi / 2
    min_range_m: float = 0.0

    def contains(self, pose: Pose, enu: FloatArray) -> npt.NDArray[np.bool_]:
        return self.sees(*cartesian_to_spherical(pose.enu_to_sensor(enu)))

    def volume(self) -> float:
        """Its volume in (range, azimuth, elevation), m · rad²: what a radar's false alarms,
        uniform in its measurements, spread over. From `min_range_m` (a long-range radar's blind
        zone, 300 of 2500 m, is 12 % of its range)."""
        return (self.max_range_m - self.min_range_m) * (2 * self.fov_az_rad) * (2 * self.fov_el_rad)

    def sees(self, rng: FloatArray, az: FloatArray, el: FloatArray) -> npt.NDArray[np.bool_]:
        """`contains` for points already in the sensor's spherical coordinates (a radar's
        predicted measurements: range, azimuth from the boresight, elevation)."""
        return np.asarray(
            (rng <= self.max_range_m)
            & (rng >= self.min_range_m)
            & (np.abs(az) <= self.fov_az_rad)
            & (np.abs(el) <= self.fov_el_rad)
        )

    def beyond(self, rng: FloatArray, az: FloatArray, el: FloatArray) -> FloatArray:
        """(4, K): how far past each limit the points are, in its own unit (m past the far and
        the near range, rad past the azimuth and the elevation edge); all ≤ 0 inside."""
        return np.stack(
            [
                rng - self.max_range_m,
                self.min_range_m - rng,
                np.abs(az) - self.fov_az_rad,
                np.abs(el) - self.fov_el_rad,
            ]
        )

    def sigmas_beyond(self, rng: FloatArray, az: FloatArray, el: FloatArray, sigma: FloatArray) -> FloatArray:
        """(K,) how far past its farthest-violated limit each point is, in σ of that coordinate
        (`sigma` (3, K): range, azimuth, elevation); negative inside."""
        return np.asarray((self.beyond(rng, az, el) / sigma[[0, 0, 1, 2]]).max(axis=0), dtype=np.float64)

    def distance_outside(self, pose: Pose, enu: FloatArray) -> FloatArray:
        """How far (m) each point is beyond the coverage's nearest violated limit: beyond a range
        limit, or the arc beyond an angular edge at its range; 0 inside."""
        rng, az, el = cartesian_to_spherical(pose.enu_to_sensor(enu))
        metres = self.beyond(rng, az, el)
        metres[2] *= rng * np.cos(el)  # the arcs past the angular edges at the points' ranges
        metres[3] *= rng
        return np.asarray(np.maximum(metres.max(axis=0), 0.0), dtype=np.float64)


@dataclass(frozen=True)
class PhysicalCoverage:
    """Whether a point is inside any radar's coverage (a Remote ID claim there should be seen)."""

    radars: list[tuple[Pose, Coverage]]

    def __call__(self, enu: np.ndarray) -> bool:
        point = np.asarray(enu, dtype=np.float64).reshape(1, 3)
        return any(bool(coverage.contains(pose, point)[0]) for pose, coverage in self.radars)


RADIAL_SPAN_MPS = 40.0
"""The range-rate interval clutter spreads over in a radar's measurement volume (±20 m/s)."""


@dataclass(frozen=True)
class RadarModel:
    """Range, azimuth, elevation and, with `dim` 4, radial velocity in the radar's frame.

    `dim` 3 is the same model without the range-rate row: for radars that do not measure it and
    for detections that arrive without it. Its Jacobian is the first three rows of the 4-D one
    (`radar_predict`); a track started from it begins at rest with the broad velocity prior, since
    a single plot says nothing about motion."""

    sensor_id: str
    pose: Pose
    coverage: Coverage
    dim: int = 4
    angle_rows: tuple[int, ...] = (1,)
    ranging: bool = True
    initial_speed_sigma_mps: float = 15.0
    unambiguous_range_rate_mps: float | None = None  # `RadarSensor.unambiguous_range_rate_mps` (`gating`)
    splits_objects: bool = True  # `RadarSensor.splits_objects`
    sweeps: bool = False  # `RadarSensor.sweeps`: its looks are the engine's, once a sweep
    blind_radial_mps: float = 0.0  # `RadarSensor.blind_radial_mps`: its Doppler notch (`looks`)
    range_rate_sigma_mps: float = 0.316  # `RadarSensor.range_rate_sigma_mps` (`looks.doppler_visible`)
    reflectors: SiteReflectors | None = field(default=None, compare=False)  # `RadarSensor.reflectors`

    def __post_init__(self) -> None:
        if self.dim not in (3, 4):
            raise ValueError(f"a radar model has 3 or 4 rows, not {self.dim}")
        if self.reflectors is not None and self.reflectors.dim < self.dim:  # densities per other units
            raise ValueError("a reflector map learnt without range-rate cannot price 4-row detections")

    @property
    def range_rate(self) -> bool:
        return self.dim == 4

    def predict(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        z, h = radar_predict(x, self.pose)
        if self.dim == 4:
            return z, h
        return z[:, :3].copy(), h[:, :3, :].copy()

    def measurement_volume(self) -> float:
        """Volume of measurement space (m · rad², · m/s with range-rate) over which clutter
        spreads: the coverage's, times `RADIAL_SPAN_MPS` with range-rate (the track score uses
        the span learnt from the radar's plots: `SensorStats.clutter_density`)."""
        volume = self.coverage.volume()
        return volume * RADIAL_SPAN_MPS if self.dim == 4 else volume

    def innovation(self, z: FloatArray, z_pred: FloatArray) -> FloatArray:
        """z − z_pred with the azimuth wrapped to [−π, π) and, for a radar whose range-rate
        wraps, the range-rate to [−span, span): a plot's radial speed is the target's modulo
        twice the span (`gating` has what a track that cannot yet tell the alias does)."""
        nu = z - z_pred
        nu[..., 1] = wrap_angle(nu[..., 1])
        span = self.unambiguous_range_rate_mps
        if span is not None and self.dim == 4:
            nu[..., 3] = wrap(nu[..., 3], span)
        return nu

    def initiate(self, z: FloatArray, r: FloatArray) -> tuple[FloatArray, FloatArray]:
        sigmas = np.sqrt(np.diagonal(r, axis1=1, axis2=2))
        if self.dim == 3:  # no range-rate: start at rest (radial 0) under the velocity prior
            z = np.column_stack([z, np.zeros(z.shape[0])])
            sigmas = np.column_stack([sigmas, np.full(z.shape[0], self.initial_speed_sigma_mps)])
        return radar_to_state(z, sigmas, self.pose, self.initial_speed_sigma_mps, self.dim == 4)


@dataclass(frozen=True)
class BearingModel:
    """Azimuth and elevation only (acoustic arrays, direction-finding RF).

    For sound, the bearing points where the target *was* when it emitted: the model looks back
    by the propagation delay tau = range / c using the track's own velocity, so a drone heard 300 m
    away is fused where it was 0.9 s earlier rather than dragging the track backwards.
    """

    sensor_id: str
    pose: Pose
    coverage: Coverage
    propagation_mps: float | None = None  # None: electromagnetic (no delay worth modelling)
    range_prior_m: float = 150.0
    range_prior_sigma_m: float = 100.0
    initial_speed_sigma_mps: float = 10.0
    dim: int = 2
    angle_rows: tuple[int, ...] = (0,)
    ranging: bool = False
    splits_objects: bool = True  # a beam's sidelobe or a reflection may look like a second source
    sweeps: bool = False  # its reports are partial scans, never looks (`RadarModel.sweeps`)

    def measurement_volume(self) -> float:
        return (2 * self.coverage.fov_az_rad) * (2 * self.coverage.fov_el_rad)

    def _delay(self, x: FloatArray) -> FloatArray:
        if self.propagation_mps is None:
            return np.zeros(x.shape[0])
        return np.linalg.norm(x[:, :3] - self.pose.offset_enu_m, axis=1) / self.propagation_mps

    def predict(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        tau = self._delay(x)
        retarded = x.copy()
        retarded[:, :3] = x[:, :3] - x[:, 3:] * tau[:, None]
        z4, h4 = radar_predict(retarded, self.pose)
        h = h4[:, 1:3, :].copy()
        # d(retarded position)/dv = -tau·I: the velocity columns pick up the position ones.
        h[:, :, 3:] = h[:, :, 3:] - h[:, :, :3] * tau[:, None, None]
        return z4[:, 1:3], h

    def innovation(self, z: FloatArray, z_pred: FloatArray) -> FloatArray:
        nu = z - z_pred
        nu[..., 0] = wrap_angle(nu[..., 0])
        return nu

    def initiate(self, z: FloatArray, r: FloatArray) -> tuple[FloatArray, FloatArray]:
        """A bearing-only track: placed at the range prior along the bearing with an honest,
        elongated covariance, so a later radar or Remote ID measurement can range it."""
        m = z.shape[0]
        sig = np.sqrt(np.diagonal(r, axis1=1, axis2=2))
        full = np.column_stack([np.full(m, self.range_prior_m), z[:, 0], z[:, 1], np.zeros(m)])
        sigmas = np.column_stack([np.full(m, self.range_prior_sigma_m), sig[:, 0], sig[:, 1], np.ones(m)])
        return radar_to_state(full, sigmas, self.pose, self.initial_speed_sigma_mps)


@dataclass(frozen=True)
class PositionVelocityModel:
    """A geodetic report converted to ENU (Remote ID): position, and velocity when broadcast."""

    sensor_id: str
    with_velocity: bool = True
    initial_speed_sigma_mps: float = 10.0
    coverage: Coverage = field(default_factory=lambda: Coverage(max_range_m=1e9))
    pose: Pose = field(default_factory=lambda: Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0)))
    angle_rows: tuple[int, ...] = ()
    ranging: bool = True
    splits_objects: bool = True  # `remote_id_input` binds reports to tracks by identity first
    sweeps: bool = False  # its reports are partial scans, never looks (`RadarModel.sweeps`)

    @property
    def dim(self) -> int:
        return 6 if self.with_velocity else 3

    def measurement_volume(self) -> float:
        return 1e12  # cooperative reports: practically no clutter

    def predict(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        h = np.zeros((x.shape[0], self.dim, STATE_DIM))
        idx = np.arange(self.dim)
        h[:, idx, idx] = 1.0
        return x[:, : self.dim].copy(), h

    def innovation(self, z: FloatArray, z_pred: FloatArray) -> FloatArray:
        return z - z_pred

    def initiate(self, z: FloatArray, r: FloatArray) -> tuple[FloatArray, FloatArray]:
        m = z.shape[0]
        x = np.zeros((m, STATE_DIM))
        p = np.zeros((m, STATE_DIM, STATE_DIM))
        x[:, : self.dim] = z
        p[:, : self.dim, : self.dim] = r
        if not self.with_velocity:
            p[:, 3:, 3:] = velocity_prior(self.initial_speed_sigma_mps)
        return x, p


MeasurementModel = RadarModel | BearingModel | PositionVelocityModel


def noise_from_sigmas(sigmas: FloatArray) -> FloatArray:
    return diagonal_covariance(sigmas)


def radar_model(sensor: RadarSensor, *, range_rate: bool = True) -> RadarModel:
    """The measurement model of a configured radar: with the range-rate row (`dim` 4) or without
    (`dim` 3, for a radar that does not measure it or detections that lack it)."""
    coverage = Coverage(sensor.max_range_m, sensor.fov_az_rad, sensor.fov_el_rad, sensor.min_range_m)
    return RadarModel(
        sensor.sensor_id,
        sensor.pose,
        coverage,
        dim=4 if range_rate else 3,
        unambiguous_range_rate_mps=sensor.unambiguous_range_rate_mps,
        splits_objects=sensor.splits_objects,
        sweeps=sensor.sweeps,
        blind_radial_mps=sensor.blind_radial_mps if range_rate else 0.0,
        range_rate_sigma_mps=sensor.range_rate_sigma_mps or 0.0,
        reflectors=sensor.reflectors,
    )


def bearing_model(sensor: BearingSensor) -> BearingModel:
    """The measurement model of a configured direction finder (all-round coverage to its range)."""
    return BearingModel(
        sensor.sensor_id, sensor.pose, Coverage(sensor.max_range_m), propagation_mps=sensor.propagation_mps
    )


def ekf_update(
    model: MeasurementModel, x: FloatArray, p: FloatArray, z: FloatArray, r: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """One extended-Kalman update of states (K,6), (K,6,6) by measurements (K,D), (K,D,D), linearised
    at each state: the updated x and P, and the innovation ν, S and S⁻¹ (for likelihoods)."""
    z_pred, h = model.predict(x)
    pht = p @ h.swapaxes(1, 2)
    s = h @ pht + r
    s_inv = np.asarray(np.linalg.inv(s), dtype=np.float64)
    nu = model.innovation(z, z_pred)
    gain = pht @ s_inv
    x = x + np.einsum("kij,kj->ki", gain, nu)
    p = p - gain @ pht.swapaxes(1, 2)  # K S Kᵀ, S symmetric
    return x, 0.5 * (p + p.swapaxes(1, 2)), nu, s, s_inv


def splitting(model: MeasurementModel) -> bool:
    """Whether two detections of one scan within each other's noise are one object: a split
    cluster (`splits_objects`), or a scanning radar's target split across two beam dwells of one
    batch of plots (`sweeps`; one at a time, the second was its track's look again)."""
    return model.splits_objects or model.sweeps
