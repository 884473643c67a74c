"""Measurement sets for tracker benchmarks: truth and radar detections with exactly the stated Pd
and clutter, independent of the node's simulator and drivers.

A radar sits at the origin, boresight north (+y), level; its frame is the node's ENU frame (x east,
y north, z up). Azimuth is measured from boresight towards +x (clockwise from above), elevation up
from the horizontal: the conventions of `cuas_node.kernel.measurement.RadarDetection`. Each scan:
every target inside the coverage is detected with probability `pd` (independently), its
measurement is the true (range, azimuth, elevation[, range-rate]) plus Gaussian noise of the
radar's sigmas; Poisson(`clutter`) false alarms are uniform over the coverage in range, azimuth,
elevation (and range-rate over ±`CLUTTER_RADIAL_MPS`). Detections are shuffled.

Two radars:
- `TI_RADAR`: a TI-like 4-D radar (range-rate), 200 m, ±60° × ±40°, 0.15 m / 1° / 2° / 0.1 m/s;
- `LONG_RANGE`: a 3-D surveillance radar (no range-rate), 300–2500 m, ±60° × ±20°, 2 m / 1° / 1°.
Both at 20 scans/s. Targets are drones: nearly straight flight; in a `stress` set half of them fly
through one common point at mid-run (crossing: their paths, turns included, are shifted to meet
it) and all turn at up to `STRESS_TURN_RAD_S`, changing turn rate every 2–4 s (manoeuvring).
Under `churn` targets are born and die anywhere in the coverage during the run (`_lifetimes`);
with `reflectors`, fixed points flicker in and out of the plots (`_Reflectors`).

Everything is deterministic given (set, seed). Used by benchmarks/tracker_vs_stonesoup.py and
tests/test_benchmark_sets.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

CLUTTER_RADIAL_MPS = 20.0  # clutter range-rates are uniform in ±this (4-D radars)
STRESS_TURN_RAD_S = 0.3


@dataclass(frozen=True)
class Radar:
    name: str
    min_range_m: float
    max_range_m: float
    fov_az_rad: float  # half-widths
    fov_el_rad: float
    sigma: tuple[float, ...]  # range m, az rad, el rad[, range-rate m/s]: its length is the dimension
    rate_hz: float = 20.0
    speed_mps: tuple[float, float] = (4.0, 15.0)  # target speeds
    alt_m: tuple[float, float] = (10.0, 60.0)  # target heights

    @property
    def dim(self) -> int:
        return len(self.sigma)

    @property
    def range_rate(self) -> bool:
        return self.dim == 4

    def volume(self) -> float:
        """The measurement volume clutter spreads over (m · rad², · m/s with range-rate)."""
        v = (self.max_range_m - self.min_range_m) * (2 * self.fov_az_rad) * (2 * self.fov_el_rad)
        return v * 2 * CLUTTER_RADIAL_MPS if self.range_rate else v

    def cross_range_sigma_m(self) -> float:
        """1σ position error across the line of sight at the maximum range (the worst)."""
        return max(self.sigma[0], self.max_range_m * max(self.sigma[1], self.sigma[2]))

    def inside(self, pos: FloatArray) -> BoolArray:
        r, az, el = spherical(pos)
        return np.asarray(
            (r >= self.min_range_m)
            & (r <= self.max_range_m)
            & (np.abs(az) <= self.fov_az_rad)
            & (np.abs(el) <= self.fov_el_rad)
        )

    def config_sensor(self, false_alarms_per_scan: float) -> dict[str, Any]:
        """The node config's sensor section describing this radar (as a user would write it)."""
        if self.name == "ti":
            # A TI board: the tracker takes its accuracies and rate from the shipped IWR6843
            # profile (`fusion_setup.ti_radar_figures`); the config gives range and field of view.
            return {
                "kind": "ti-mmwave",
                "id": "radar",
                "port": "/dev/null",
                "max_range_m": self.max_range_m,
                "fov_az_deg": math.degrees(self.fov_az_rad),
                "fov_el_deg": math.degrees(self.fov_el_rad),
            }
        return {
            "kind": "radar",
            "id": "radar",
            "max_range_m": self.max_range_m,
            "min_range_m": self.min_range_m,
            "fov_az_deg": math.degrees(self.fov_az_rad),
            "fov_el_deg": math.degrees(self.fov_el_rad),
            "range_sigma_m": self.sigma[0],
            "az_sigma_deg": math.degrees(self.sigma[1]),
            "el_sigma_deg": math.degrees(self.sigma[2]),
            "range_rate": self.range_rate,
            **({"range_rate_sigma_mps": self.sigma[3]} if self.range_rate else {}),
            "rate_hz": self.rate_hz,
            "false_alarms_per_scan": false_alarms_per_scan,
        }


TI_RADAR = Radar(
    "ti",
    0.25,
    200.0,
    math.radians(60.0),
    math.radians(40.0),
    (0.15, math.radians(1.0), math.radians(2.0), 0.1),
)
LONG_RANGE = Radar(
    "long-range",
    300.0,
    2500.0,
    math.radians(60.0),
    math.radians(20.0),
    (2.0, math.radians(1.0), math.radians(1.0)),
    speed_mps=(5.0, 25.0),
    alt_m=(30.0, 300.0),
)


@dataclass(frozen=True)
class SetSpec:
    name: str
    radar: Radar
    targets: int
    clutter: float  # false alarms per scan (Poisson mean)
    pd: float = 0.9
    stress: bool = False
    duration_s: float = 12.0
    wander_q: float = 0.0  # m²/s³: white random acceleration of the truth (0: the set's own motion)
    churn: bool = False  # targets are born and die inside the coverage during the run
    reflectors: int = 0  # fixed clutter points that flicker (`_Reflectors`): not targets
    survey_s: float = 0.0  # ours learns the site's reflectors from this long a survey (`site_survey`)
    fixtures_after_s: float | None = None  # ours learns fixtures after this long (None: the node's default)


@dataclass(frozen=True)
class Scan:
    t: float
    z: FloatArray  # (M, D) range, az, el[, range-rate], sensor (= ENU) frame
    truth: FloatArray  # (N, 3) every target's ENU position
    inside: BoolArray  # (N,) which targets are inside the radar's coverage
    n_true: int  # how many rows of z are target detections (before the shuffle)


def spherical(pos: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    horizontal = np.hypot(pos[:, 0], pos[:, 1])
    return (
        np.hypot(horizontal, pos[:, 2]),
        np.arctan2(pos[:, 0], pos[:, 1]),
        np.arctan2(pos[:, 2], horizontal),
    )


def measure_true(pos: FloatArray, vel: FloatArray, dim: int) -> FloatArray:
    r, az, el = spherical(pos)
    cols = [r, az, el]
    if dim == 4:
        cols.append(np.einsum("ij,ij->i", pos, vel) / np.maximum(r, 1e-9))
    return np.stack(cols, axis=1)


def _start(spec: SetSpec, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Positions well inside the coverage, heights in the radar's band, headings at random."""
    radar, n = spec.radar, spec.targets
    span = radar.max_range_m - radar.min_range_m
    r = rng.uniform(radar.min_range_m + 0.1 * span, radar.min_range_m + 0.85 * span, n)
    az = rng.uniform(-0.8, 0.8, n) * radar.fov_az_rad
    # Heights in the band, but below 70 % of the elevation limit at that range.
    top = np.minimum(radar.alt_m[1], 0.7 * r * math.tan(radar.fov_el_rad))
    alt = rng.uniform(np.minimum(radar.alt_m[0], top), top)
    ground = np.sqrt(np.maximum(r**2 - alt**2, 1.0))
    pos = np.stack([ground * np.sin(az), ground * np.cos(az), alt], axis=1)
    speed = rng.uniform(*radar.speed_mps, n)
    heading = rng.uniform(0.0, 2 * math.pi, n)
    if spec.stress:  # half head for one point, to reach it at mid-run (`_truth_path` makes sure)
        cross = np.arange(n) < n // 2
        centre = _crossing_point(radar)
        to_centre = centre - pos[cross, :2]
        heading[cross] = np.arctan2(to_centre[:, 0], to_centre[:, 1])
        speed[cross] = np.clip(np.linalg.norm(to_centre, axis=1) / (spec.duration_s / 2.0), *radar.speed_mps)
        pos[cross, :2] = centre - (
            np.stack([np.sin(heading[cross]), np.cos(heading[cross])], axis=1)
            * (speed[cross] * spec.duration_s / 2.0)[:, None]
        )
    vel = np.stack([speed * np.sin(heading), speed * np.cos(heading), rng.normal(0.0, 0.5, n)], axis=1)
    return pos, vel


def _wander(
    pos: FloatArray,
    vel: FloatArray,
    q: float,
    dt: float,
    speeds: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """One step of nearly-constant-velocity motion driven by continuous white acceleration of
    spectral density q (vertical 0.3² q), sampled exactly (Stone Soup's `ConstantVelocity` truth):
    a generator our tracker was not built around. Horizontal speed is then kept within the
    radar's drone speeds (up to 1.5 × the fastest), so that no target stops or races off."""
    axis = np.sqrt(q * np.array([1.0, 1.0, 0.09]))
    dv = rng.normal(0.0, 1.0, pos.shape) * axis * math.sqrt(dt)
    dp = dv * dt / 2.0 + rng.normal(0.0, 1.0, pos.shape) * axis * math.sqrt(dt**3 / 12.0)
    pos, vel = pos + vel * dt + dp, vel + dv
    horizontal = np.linalg.norm(vel[:, :2], axis=1)
    vel[:, :2] *= (np.clip(horizontal, speeds[0], 1.5 * speeds[1]) / np.maximum(horizontal, 1e-9))[:, None]
    return pos, vel


def _truth_path(
    spec: SetSpec, pos: FloatArray, vel: FloatArray, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Positions and velocities (steps, N, 3) of every target, all of its motion drawn before any
    detection.

    In a stress set every target turns at up to `STRESS_TURN_RAD_S`, changing its turn rate
    every 2–4 s, and the crossers' whole paths are then shifted so that each is at the common
    point at mid-run, turns and all: shifted before, they missed it by up to ~180 m."""
    radar, n = spec.radar, spec.targets
    turn = np.zeros(n)
    next_change = rng.uniform(0.0, 2.0, n)
    dt = 1.0 / radar.rate_hz
    steps = round(spec.duration_s * radar.rate_hz)
    path, path_vel = np.empty((steps, n, 3)), np.empty((steps, n, 3))
    for k in range(steps):
        t = k * dt
        if k:
            if spec.stress:
                change = t >= next_change
                turn[change] = rng.uniform(-STRESS_TURN_RAD_S, STRESS_TURN_RAD_S, int(change.sum()))
                next_change[change] = t + rng.uniform(2.0, 4.0, int(change.sum()))
                c, s = np.cos(turn * dt), np.sin(turn * dt)
                vx, vy = vel[:, 0].copy(), vel[:, 1].copy()
                vel[:, 0], vel[:, 1] = c * vx + s * vy, -s * vx + c * vy
            if spec.wander_q:
                pos, vel = _wander(pos, vel, spec.wander_q, dt, radar.speed_mps, rng)
            else:
                pos = pos + vel * dt
        path[k], path_vel[k] = pos, vel
    if spec.stress:
        cross = np.arange(n) < n // 2
        path[:, cross, :2] += _crossing_point(radar) - path[steps // 2, cross, :2]
    return path, path_vel


def _crossing_point(radar: Radar) -> FloatArray:
    """Where a stress set's crossers meet: on boresight at mid-range."""
    return np.array([0.0, radar.min_range_m + 0.5 * (radar.max_range_m - radar.min_range_m)])


def _lifetimes(spec: SetSpec, seed: int) -> tuple[FloatArray, FloatArray]:
    """Birth and death times of every target under `churn` (a generator such as Stone Soup's
    multi-target simulator, where targets appear and vanish anywhere): half are there from the
    start, the others are born in the first 60 % of the run; each lives at least 2 s, and dies
    at a uniform time up to 1.6 × the run's length (about a third outlive it). Its own random
    stream, so that everything else about a set is as without churn."""
    n, duration = spec.targets, spec.duration_s
    if not spec.churn:
        return np.zeros(n), np.full(n, np.inf)
    rng = np.random.default_rng([seed, spec.targets, 0xC4])
    birth = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.0, 0.6 * duration, n))
    return birth, rng.uniform(birth + 2.0, 1.6 * duration)


REFLECTOR_PD = (0.05, 0.5)  # each reflector's chance of a plot in a scan: uniform in this range
REFLECTOR_ALT_M = (0.0, 30.0)  # masts, roofs, trees: low, and inside the radar's elevation band


class _Reflectors:
    """Fixed points that the radar sees in some scans and not others (a mast, a roof edge, a tree
    in the wind): each at a random place in the coverage, each with its own chance of a plot a
    scan (`REFLECTOR_PD`), its plots measured with the radar's noise at range-rate 0. Not targets:
    a track on one is a false track. Their own random stream, so that everything else about a
    set is as without them."""

    def __init__(self, spec: SetSpec, seed: int) -> None:
        radar, n = spec.radar, spec.reflectors
        self.rng = np.random.default_rng([seed, n, 0x5EF])
        span = radar.max_range_m - radar.min_range_m
        r = self.rng.uniform(radar.min_range_m + 0.05 * span, radar.max_range_m - 0.05 * span, n)
        az = self.rng.uniform(-0.9, 0.9, n) * radar.fov_az_rad
        top = np.minimum(REFLECTOR_ALT_M[1], 0.8 * r * math.tan(radar.fov_el_rad))
        alt = self.rng.uniform(np.minimum(REFLECTOR_ALT_M[0], top), top)
        ground = np.sqrt(np.maximum(r**2 - alt**2, 1.0))
        self.pos = np.stack([ground * np.sin(az), ground * np.cos(az), alt], axis=1)
        self.pd = self.rng.uniform(*REFLECTOR_PD, n)
        self.radar = radar

    def plots(self) -> FloatArray:
        seen = self.rng.random(self.pd.size) < self.pd
        pos = self.pos[seen]
        z = measure_true(pos, np.zeros_like(pos), self.radar.dim)
        return np.asarray(
            z + self.rng.normal(0.0, 1.0, z.shape) * np.asarray(self.radar.sigma), dtype=np.float64
        )


def false_alarms(radar: Radar, m: int, rng: np.random.Generator) -> FloatArray:
    """`m` false alarms uniform over the radar's coverage (and ±`CLUTTER_RADIAL_MPS` range-rate)."""
    cols = [
        rng.uniform(radar.min_range_m, radar.max_range_m, m),
        rng.uniform(-radar.fov_az_rad, radar.fov_az_rad, m),
        rng.uniform(-radar.fov_el_rad, radar.fov_el_rad, m),
    ]
    if radar.range_rate:
        cols.append(rng.uniform(-CLUTTER_RADIAL_MPS, CLUTTER_RADIAL_MPS, m))
    return np.stack(cols, axis=1)


def site_survey(spec: SetSpec, seed: int) -> list[FloatArray]:
    """The site with nothing flying, `spec.survey_s` long, as a technician records it for
    `cuas-node calibrate radar-reflectors`: each scan's plots (range, az, el[, range-rate]), the
    set's false alarms and its reflectors (the same places as in `make_scans`, their own flicker
    and noise draws, and a stream of their own for the false alarms)."""
    radar = spec.radar
    rng = np.random.default_rng([seed, spec.targets, 0x5A7E])
    reflectors = _Reflectors(spec, seed) if spec.reflectors else None
    if reflectors is not None:
        reflectors.rng = np.random.default_rng([seed, spec.reflectors, 0x5A7E])
    scans: list[FloatArray] = []
    for _ in range(round(spec.survey_s * radar.rate_hz)):
        z = false_alarms(radar, int(rng.poisson(spec.clutter)), rng)
        scans.append(z if reflectors is None else np.concatenate([z, reflectors.plots()]))
    return scans


def make_scans(spec: SetSpec, seed: int) -> list[Scan]:
    """Truth and detections of one (set, seed)."""
    key = [seed, spec.targets, int(spec.clutter * 10), int(spec.pd * 100), spec.stress]
    rng = np.random.default_rng(key + ([round(spec.wander_q * 1000)] if spec.wander_q else []))
    radar, n = spec.radar, spec.targets
    start, vel = _start(spec, rng)
    path, path_vel = _truth_path(spec, start, vel, rng)
    birth, death = _lifetimes(spec, seed)
    dt = 1.0 / radar.rate_hz
    sigma = np.asarray(radar.sigma)
    reflectors = _Reflectors(spec, seed) if spec.reflectors else None
    scans: list[Scan] = []
    for k, (pos, vel) in enumerate(zip(path, path_vel, strict=True)):
        t = k * dt
        inside = radar.inside(pos)
        detected = inside & (rng.random(n) < spec.pd)
        n_true = int(detected.sum())
        z_true = (
            measure_true(pos[detected], vel[detected], radar.dim)
            + rng.normal(0.0, 1.0, (n_true, radar.dim)) * sigma
        )
        m = int(rng.poisson(spec.clutter))
        clutter = false_alarms(radar, m, rng)
        order = rng.permutation(n_true + m)
        z = np.concatenate([z_true, clutter])[order]
        alive = (t >= birth) & (t < death)
        if not alive.all():  # the same draws as without churn, less the detections of the absent
            origin = np.concatenate([np.flatnonzero(detected), np.full(m, -1)])[order]
            z = z[(origin < 0) | alive[np.maximum(origin, 0)]]
            inside, n_true = inside & alive, int((detected & alive).sum())
        if reflectors is not None:
            z = np.concatenate([z, reflectors.plots()])
            z = z[reflectors.rng.permutation(z.shape[0])]
        scans.append(Scan(t, z, pos.copy(), inside, n_true))
    return scans


def _sets(duration: float, stress_duration: float, big: int) -> list[SetSpec]:
    ti, lr = TI_RADAR, LONG_RANGE
    return [
        SetSpec("ti-5x10", ti, 5, 10, duration_s=duration),
        SetSpec("ti-20x50", ti, 20, 50, duration_s=duration),
        SetSpec(f"ti-{big}x10", ti, big, 10, duration_s=duration),
        SetSpec("ti-stress", ti, 20, 30, pd=0.8, stress=True, duration_s=stress_duration),
        SetSpec("lr-5x0", lr, 5, 0, pd=0.7, duration_s=duration),
        SetSpec("lr-5x10", lr, 5, 10, duration_s=duration),
        SetSpec("lr-20x10", lr, 20, 10, pd=0.8, duration_s=duration),
        SetSpec("lr-20x50", lr, 20, 50, pd=0.8, duration_s=duration),
        SetSpec(f"lr-{big}x10", lr, big, 10, duration_s=duration),
        SetSpec("lr-stress", lr, 20, 30, pd=0.7, stress=True, duration_s=stress_duration),
        SetSpec("lr-500x10", lr, 500, 10, duration_s=duration),  # a swarm, all in view at once
    ]


FULL_SETS = _sets(12.0, 16.0, 100)
"""Full run: 12 s per set (16 s for the stress sets, so the crossers fly at drone speeds)."""

QUICK_SETS = [
    replace(
        s, duration_s=2.0 if s.targets >= 100 else 3.0, targets=min(s.targets, 10) if s.stress else s.targets
    )
    for s in _sets(3.0, 3.0, 100)
    if s.name in ("ti-5x10", "lr-5x10", "lr-20x50", "lr-100x10", "lr-stress")
]
"""Smoke test (`--quick`): 3 s sets (2 s with 100 targets), one seed; steady state after 1 s."""
