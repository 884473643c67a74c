"""Simulated TI mmWave radar: scenario targets → noisy point clouds → real TI UART frames.

It models what the tracker must survive on a real board: range/angle/Doppler noise, detection
probability falling with range and rising with RCS, several points per target, multipath ghosts
(the target's mirror image below the ground), static clutter (zero Doppler) and random false alarms.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.radar.ti_cli import load_profile, parse_cfg, summarise_profile
from cuas_node.drivers.radar.ti_encode import encode_frame
from cuas_node.drivers.sim.scenario import SimRadarSpec
from cuas_node.drivers.sim.world import TargetState
from cuas_node.kernel.pose import cartesian_to_spherical, spherical_to_cartesian, wrap

FloatArray = npt.NDArray[np.float64]
_REFERENCE_RCS_M2 = 0.01
_SNR_AT_REFERENCE_DB = 18.0
_CPU_HZ = 200e6  # the xWR16xx DSP clock that `timeCpuCycles` counts


class SimRadar:
    def __init__(self, spec: SimRadarSpec, seed: int) -> None:
        self.spec = spec
        self.pose = spec.mount.pose()
        self.rng = np.random.default_rng(seed)
        self.frame_number = 0
        # Radial speeds wrap past the chirp profile's unambiguous span (the Doppler FFT's): until a
        # board is configured (`restart`), the shipped IWR6843 profile's.
        self.max_velocity_mps = summarise_profile(
            parse_cfg(load_profile(None, "iwr6843")[0])
        ).max_velocity_mps
        self.reference_range = spec.max_range_m / 2.0
        fov_az, fov_el = math.radians(spec.fov_az_deg), math.radians(spec.fov_el_deg)
        # Static clutter (buildings, poles, trees) is fixed in the scene: zero Doppler, frame after frame.
        n = spec.static_clutter_points
        self.clutter = spherical_to_cartesian(
            self.rng.uniform(5.0, spec.max_range_m, n),
            self.rng.uniform(-fov_az, fov_az, n),
            self.rng.uniform(-0.1, min(0.2, fov_el), n),
        )

    def _detectable(self, r: FloatArray, az: FloatArray, el: FloatArray, rcs: FloatArray) -> FloatArray:
        spec = self.spec
        in_fov = (
            (r <= spec.max_range_m)
            & (np.abs(az) <= math.radians(spec.fov_az_deg))
            & (np.abs(el) <= math.radians(spec.fov_el_deg))
        )
        exponent = (r / self.reference_range) ** 4 * (_REFERENCE_RCS_M2 / rcs)
        p_detect = np.where(in_fov, spec.p_detect**exponent, 0.0)
        return p_detect

    def points(self, targets: TargetState) -> tuple[FloatArray, FloatArray]:
        """Point cloud (N,4: x,y,z,doppler) in the sensor frame and the SNR of each point in dB."""
        spec, rng = self.spec, self.rng
        clouds: list[FloatArray] = []
        snrs: list[FloatArray] = []
        if targets.enu.shape[0]:
            rel = self.pose.enu_to_sensor(targets.enu)
            vel = targets.vel @ self.pose.rotation
            r, az, el = cartesian_to_spherical(rel)
            radial = np.einsum("ij,ij->i", rel, vel) / np.maximum(r, 1e-6)
            detected = rng.random(r.shape[0]) < self._detectable(r, az, el, targets.rcs_m2)
            snr = (
                _SNR_AT_REFERENCE_DB
                + 10 * np.log10(targets.rcs_m2 / _REFERENCE_RCS_M2)
                + 40 * np.log10(self.reference_range / np.maximum(r, 1.0))
            )
            for i in np.flatnonzero(detected):
                # One angle/range error per target and frame (it comes from one antenna snapshot),
                # then the points spread over the target's extent and neighbouring bins.
                n = 1 + rng.poisson(spec.mean_points_per_target - 1)
                centre = spherical_to_cartesian(
                    r[i] + rng.normal(0, spec.range_sigma_m),
                    az[i] + rng.normal(0, math.radians(spec.az_sigma_deg)),
                    el[i] + rng.normal(0, math.radians(spec.el_sigma_deg)),
                )
                xyz = centre + rng.normal(0, spec.point_spread_m, (n, 3))
                dop = (
                    radial[i]
                    + rng.normal(0, spec.doppler_sigma_mps)
                    + rng.normal(0, spec.doppler_sigma_mps / 2, n)
                )
                clouds.append(np.column_stack([xyz, dop]))
                snrs.append(snr[i] + rng.normal(0, 1.5, n))
                if rng.random() < spec.multipath_probability:
                    # Ground bounce: the radar sees the target's mirror image below the ground (the
                    # node's reference height, u = 0), at the length of the reflected path.
                    image = targets.enu[i] * np.array([1.0, 1.0, -1.0])
                    image_vel = targets.vel[i] * np.array([1.0, 1.0, -1.0])
                    rel_img = self.pose.enu_to_sensor(image)
                    ri, azi, eli = cartesian_to_spherical(rel_img[None, :])
                    radial_img = float(rel_img @ (image_vel @ self.pose.rotation) / max(float(ri[0]), 1e-6))
                    ghost = spherical_to_cartesian(
                        ri + rng.normal(0, spec.range_sigma_m),
                        azi + rng.normal(0, math.radians(spec.az_sigma_deg)),
                        eli + rng.normal(0, math.radians(spec.el_sigma_deg)),
                    )
                    clouds.append(np.column_stack([ghost, [radial_img]]))
                    snrs.append(np.array([snr[i] - 6.0]))
        if self.clutter.shape[0]:
            jitter = rng.normal(0, 0.05, self.clutter.shape)
            clouds.append(
                np.column_stack([self.clutter + jitter, rng.normal(0, 0.02, self.clutter.shape[0])])
            )
            snrs.append(np.asarray(rng.uniform(10, 25, self.clutter.shape[0]), dtype=np.float64))
        n_false = rng.poisson(spec.false_alarms_per_frame)
        if n_false:
            fov_az, fov_el = math.radians(spec.fov_az_deg), math.radians(spec.fov_el_deg)
            xyz = spherical_to_cartesian(
                rng.uniform(3.0, spec.max_range_m, n_false),
                rng.uniform(-fov_az, fov_az, n_false),
                rng.uniform(-fov_el, fov_el, n_false),
            )
            clouds.append(np.column_stack([xyz, rng.uniform(-10, 10, n_false)]))
            snrs.append(rng.uniform(8, 14, n_false))
        if not clouds:
            return np.zeros((0, 4)), np.zeros(0)
        cloud = np.vstack(clouds)
        cloud[:, 3] = wrap(cloud[:, 3], self.max_velocity_mps)  # what the Doppler FFT can tell
        return cloud, np.concatenate(snrs)

    def restart(self, max_velocity_mps: float | None = None) -> None:
        """Frame numbers start again, as on a board configured afresh (`SimTiBoard(on_start=...)`);
        `max_velocity_mps`: the unambiguous radial speed of the profile it now runs (None: the
        board could not summarise it; the last one stays)."""
        self.frame_number = 0
        if max_velocity_mps is not None:
            self.max_velocity_mps = max_velocity_mps

    def frame(self, targets: TargetState) -> bytes:
        """The next TI UART frame, byte for byte what an xWR1642 running the OOB demo would send."""
        pts, snr = self.points(targets)
        noise = np.full(snr.shape, 60.0)
        data = encode_frame(
            self.frame_number,
            pts.astype(np.float32),
            snr_db=snr,
            noise_db=noise,
            time_cpu_cycles=int(self.frame_number * _CPU_HZ / self.spec.rate_hz) & 0xFFFFFFFF,
        )
        self.frame_number += 1
        return data
