"""Radars with and without range-rate: the 3-D model, fusing frames whose detections lack it (or
carry NaN), and the generic `radar` sensor section that describes a radar other than a TI board."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cuas_node.assembly import core_setup
from cuas_node.config import ConfigError, GenericRadarSensor, TiMmwaveSensor, build_config
from cuas_node.core.step import NodeCore
from cuas_node.driver_factory import NoRadarInput, UnsupportedSensor, build_driver
from cuas_node.fusion import models
from cuas_node.fusion.ground import radar_height_sigma, radar_points_enu
from cuas_node.fusion.measurement_models import RADIAL_SPAN_MPS, Coverage, RadarModel
from cuas_node.fusion.models import CLIMB_PRIOR_SIGMA_MPS
from cuas_node.fusion.params import RadarSensor
from cuas_node.fusion.sensor_stats import SensorStats
from cuas_node.fusion_setup import sensor_spec
from cuas_node.kernel.clock import SystemClock
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.kernel.pose import Pose, cartesian_to_spherical

RADAR_UP_M = 5.0
# A surveillance radar without range-rate: 300-2500 m, 2 m in range, 1° in angles, 20 scans/s.
SURVEILLANCE: dict[str, Any] = {
    "kind": "radar",
    "id": "surv",
    "max_range_m": 2500,
    "min_range_m": 300,
    "fov_az_deg": 60,
    "fov_el_deg": 30,
    "range_sigma_m": 2.0,
    "az_sigma_deg": 1.0,
    "el_sigma_deg": 1.0,
    "rate_hz": 20,
    "false_alarms_per_scan": 0.5,
    "mount": {"offset_m": [0.0, 0.0, RADAR_UP_M]},
}
TI = {"kind": "ti-mmwave", "id": "ti", "port": "/dev/null", "max_range_m": 300, "fov_az_deg": 80}


def _core(*sensors: dict[str, Any]) -> NodeCore:
    data = {
        "node": {"id": "t", "position": {"lat": 52.0, "lon": 4.3, "alt_m": 10.0}},
        "fusion": {"reorder_window_s": 0.0},
        "sensors": list(sensors),
    }
    return NodeCore(core_setup(build_config(data, "test")))


def _detection(
    sensor_id: str,
    t: float,
    enu: np.ndarray,
    vel: np.ndarray,
    rng: np.random.Generator,
    sigmas: tuple[float, float, float, float],
    radial: bool = True,
    up_m: float = 0.0,
) -> RadarDetection:
    rel = enu - np.array([0.0, 0.0, up_m])
    r, az, el = cartesian_to_spherical(rel)
    noisy = [float(v) for v in rng.normal([r, az, el, float(rel @ vel / r)], sigmas)]
    return RadarDetection(
        sensor_id,
        t,
        t,
        noisy[0],
        noisy[1],
        noisy[2],
        noisy[3] if radial else None,
        *sigmas[:3],
        sigmas[3] if radial else None,
        snr_db=20.0,
    )


def _surveillance_frames(
    core: NodeCore,
    start: np.ndarray,
    vel: np.ndarray,
    sigmas: tuple[float, float, float, float],
    rng: np.random.Generator,
    frames: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """Targets flying straight past the 20 Hz surveillance radar, one detection each per frame
    (no range-rate): each frame is stepped through `core`, then yielded with the truth."""
    for k in range(frames):
        t = 1000.0 + k / 20.0
        truth = start + vel * (k / 20.0)
        core.step(
            t,
            [
                _detection("surv", t, p, v, rng, sigmas, False, RADAR_UP_M)
                for p, v in zip(truth, vel, strict=True)
            ],
        )
        yield k, truth


def _all_finite(core: NodeCore) -> bool:
    table = core.engine.tracker.table
    active = table.active()
    arrays = (table.x[active], table.p[active], table.xm[active], table.pm[active])
    return all(bool(np.isfinite(a).all()) for a in arrays)


# -- the model ------------------------------------------------------------------------------------


def _model(dim: int) -> RadarModel:
    return RadarModel("r", Pose.from_angles(37.0, 8.0, -5.0, (1.0, -2.0, 3.0)), Coverage(500.0), dim=dim)


def test_3d_model_jacobian_matches_numerical_derivative() -> None:
    model = _model(3)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 6)) * [50, 50, 20, 5, 5, 2] + [0, 80, 20, 0, 0, 0]
    z, h = model.predict(x)
    assert z.shape == (20, 3) and h.shape == (20, 3, 6)
    numeric = np.zeros_like(h)
    for i in range(6):
        dx = np.zeros(6)
        dx[i] = 1e-6
        numeric[:, :, i] = (model.predict(x + dx)[0] - model.predict(x - dx)[0]) / 2e-6
    assert np.allclose(h, numeric, atol=1e-6)
    # No range-rate row: nothing of the measurement depends on velocity.
    assert np.all(h[:, :, 3:] == 0.0)
    z4, h4 = _model(4).predict(x)
    assert np.array_equal(z, z4[:, :3]) and np.array_equal(h, h4[:, :3])


def test_3d_initiation_inverts_the_model_and_starts_at_rest_under_the_prior() -> None:
    model = _model(3)
    z = np.array([[800.0, 0.3, 0.05], [1500.0, -0.5, 0.1]])
    r = np.tile(np.diag(np.array([2.0, math.radians(1.0), math.radians(1.0)]) ** 2), (2, 1, 1))
    x, p = model.initiate(z, r)
    assert np.allclose(model.predict(x)[0], z, atol=1e-9)
    assert np.all(x[:, 3:] == 0.0)
    horizontal, climb = model.initial_speed_sigma_mps, CLIMB_PRIOR_SIGMA_MPS
    assert climb < horizontal
    assert np.allclose(p[:, 3:, 3:], np.diag([horizontal**2, horizontal**2, climb**2]))
    assert np.all(np.linalg.eigvalsh(p) > 0)


@pytest.mark.parametrize("span", [None, 10.1])
def test_a_range_rate_conditions_the_birth_velocity_on_the_line_of_sight(span: float | None) -> None:
    """A radar that measures range-rate starts a track knowing its speed along the line of sight to
    the plot's sigma (the prior updated by it); across the line of sight the prior stands. A radar
    whose range-rate wraps starts it at the reported alias too: the second plot tells which alias
    it is (tests/test_range_rate_alias.py)."""
    z = np.array([[40.0, 0.3, 0.4, -6.0], [25.0, -0.5, 0.0, 2.0]])
    sigma_rr = 0.1
    r = np.tile(np.diag(np.array([0.2, 0.02, 0.04, sigma_rr]) ** 2), (2, 1, 1))
    model = RadarModel("r", _model(4).pose, Coverage(60.0), dim=4, unambiguous_range_rate_mps=span)
    x, p = model.initiate(z, r)
    assert np.allclose(model.predict(x)[0], z, atol=1e-3)  # the radial speed is the plot's
    los = model.predict(x)[1][:, 3, 3:]  # d(range-rate)/d(velocity): the line of sight
    along = np.einsum("ki,kij,kj->k", los, p[:, 3:, 3:], los)
    assert np.allclose(along, sigma_rr**2, rtol=0.01)
    # Across the line of sight the horizontal prior stands (level, perpendicular to it).
    across = np.cross(los, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across, axis=1)[:, None]
    spread = np.einsum("ki,kij,kj->k", across, p[:, 3:, 3:], across)
    assert np.allclose(spread, model.initial_speed_sigma_mps**2, rtol=1e-6)
    assert np.all(np.linalg.eigvalsh(p) > 0)
    # The elevated plot's radial speed is read as mostly level flight: the climb prior is narrow.
    assert abs(x[0, 5]) < 0.2 * np.linalg.norm(x[0, 3:5])


def test_3d_model_clutter_volume_has_no_range_rate_axis() -> None:
    assert _model(4).measurement_volume() == pytest.approx(_model(3).measurement_volume() * RADIAL_SPAN_MPS)
    with pytest.raises(ValueError, match="3 or 4"):
        _model(2)


def test_clutter_density_spreads_false_alarms_from_the_blind_zone_out() -> None:
    """A radar blind to its first 300 m spreads its false alarms over 300-2500 m, not from 0: the
    density a hit's score divides by is the configured false alarms over that volume."""
    fov_az, fov_el = math.radians(60.0), math.radians(20.0)
    model = RadarModel(
        "surv",
        Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0)),
        Coverage(2500.0, fov_az, fov_el, 300.0),
        dim=3,
    )
    stats = SensorStats(false_alarms=50.0, detection_probability=0.9)
    volume = 2200.0 * (2 * fov_az) * (2 * fov_el)
    assert model.measurement_volume() == pytest.approx(volume)
    assert stats.clutter_density(0, model, 3, configured=2.0) == pytest.approx(50.0 / volume)
    assert stats.clutter_density(0, model, 4, configured=2.0) == pytest.approx(
        50.0 / volume / RADIAL_SPAN_MPS
    )


def test_ground_accepts_detections_without_range_rate() -> None:
    pose = Pose.from_angles(20.0, 5.0, 0.0, (0.0, 0.0, RADAR_UP_M))
    z = np.array([[400.0, 0.2, -0.01, 3.0], [1200.0, -0.4, 0.02, -8.0]])
    sig = np.tile([2.0, math.radians(1.0), math.radians(1.0), 0.5], (2, 1))
    enu4, up4 = radar_points_enu(z, pose), radar_height_sigma(z, sig, pose)
    enu3, up3 = radar_points_enu(z[:, :3], pose), radar_height_sigma(z[:, :3], sig[:, :3], pose)
    assert np.allclose(enu3, enu4) and np.allclose(up3, up4)


# -- tracking -------------------------------------------------------------------------------------


def test_surveillance_radar_without_range_rate_confirms_and_follows_its_targets() -> None:
    """Three targets at 400-2300 m seen only in range and angles: each is confirmed, keeps one
    track, and is followed with an RMS error below twice its cross-range sigma R·σθ (and below
    the error of a single detection: the track filters)."""
    core = _core(SURVEILLANCE)
    rng = np.random.default_rng(3)
    start = np.array([[0.0, 400.0, 60.0], [-300.0, 1200.0, 120.0], [200.0, 2300.0, 150.0]])
    vel = np.array([[10.0, 5.0, 0.0], [12.0, 0.0, 0.5], [-8.0, -10.0, 0.0]])
    sig_r, sig_angle = 2.0, math.radians(1.0)
    sigmas = (sig_r, sig_angle, sig_angle, 0.0)
    errors: list[list[float]] = [[], [], []]
    ranges: list[list[float]] = [[], [], []]
    numbers: list[set[int]] = [set(), set(), set()]
    frames = 600
    for k, truth in _surveillance_frames(core, start, vel, sigmas, rng, frames):
        live = [r for r in core.engine.current() if r.live]
        if k == frames // 6:
            assert len(live) == 3, "every target is confirmed within 5 s"
        if k < frames // 6:
            continue
        assert len(live) == 3, "no target lost, no clutter track"
        for i, p in enumerate(truth):
            nearest = min(live, key=lambda r: float(np.linalg.norm(np.asarray(r.enu_m) - p)))
            errors[i].append(float(np.linalg.norm(np.asarray(nearest.enu_m) - p)))
            ranges[i].append(float(np.linalg.norm(p - [0.0, 0.0, RADAR_UP_M])))
            numbers[i].add(nearest.number)
            assert nearest.sensors == ("surv",)
    assert all(len(n) == 1 for n in numbers), numbers
    assert len(set.union(*numbers)) == 3
    for i in range(3):
        cross_range = float(np.mean(ranges[i])) * sig_angle
        rms = math.sqrt(float(np.mean(np.square(errors[i]))))
        one_detection = math.sqrt(sig_r**2 + 2.0 * cross_range**2)
        assert rms < 2.0 * cross_range, (i, rms, cross_range)
        assert rms < one_detection, (i, rms, one_detection)
    assert core.engine.counters.without_range_rate == 3 * frames
    assert core.engine.counters.invalid == 0
    assert _all_finite(core)


def test_a_young_track_averages_its_height_instead_of_fitting_a_slope() -> None:
    """Level drones at ~2 km under a 1° beam (35 m in height a plot): two seconds after the first
    plot, the tracks' RMS height error is below that of the plain mean of the 41 plots so far,
    which is what a track knowing the target flies level would hold. With the broad 15 m/s speed
    prior vertically too (before `CLIMB_PRIOR_SIGMA_MPS`), a young track fits a sloping line
    through its plots instead: 7.1 m here against the mean's 5.3 (now 4.4)."""
    sig = math.radians(1.0)
    start = np.array(
        [[-600.0, 1800.0, 50.0], [0.0, 2000.0, 80.0], [500.0, 1900.0, 30.0], [900.0, 1700.0, 60.0]]
    )
    vel = np.array([[8.0, 3.0, 0.0], [-5.0, 9.0, 0.0], [0.0, -12.0, 0.0], [-10.0, 0.0, 0.0]])
    frame = 40
    errors, mean_of_plots = [], []
    for seed in range(20):
        core = _core(SURVEILLANCE)
        rng = np.random.default_rng(seed)
        for k, truth in _surveillance_frames(core, start, vel, (2.0, sig, sig, 0.0), rng, frame + 1):
            if k < frame:
                continue
            tracks = core.engine.current()
            for p in truth:
                nearest = min(tracks, key=lambda r: float(np.linalg.norm(np.asarray(r.enu_m)[:2] - p[:2])))
                errors.append(nearest.enu_m[2] - p[2])
                mean_of_plots.append(float(np.linalg.norm(p)) * sig / math.sqrt(frame + 1))
    rms = math.sqrt(float(np.mean(np.square(errors))))
    bound = math.sqrt(float(np.mean(np.square(mean_of_plots))))
    assert rms < bound, (rms, bound)


def _climber_rms(seeds: int) -> float:
    """RMS position error of two drones climbing and diving at 6 m/s at 500-800 m, 1-5 s."""
    sig = math.radians(1.0)
    start = np.array([[0.0, 800.0, 20.0], [300.0, 500.0, 40.0]])
    vel = np.array([[3.0, 2.0, 6.0], [-2.0, 4.0, -6.0]])
    errors = []
    for seed in range(seeds):
        core = _core(SURVEILLANCE)
        rng = np.random.default_rng(seed)
        for k, truth in _surveillance_frames(core, start, vel, (2.0, sig, sig, 0.0), rng, 100):
            live = [r for r in core.engine.current() if r.live]
            if k == 5:
                assert len(live) == 2, "both confirmed within a quarter second"
            if k >= 20:
                assert len(live) == 2
                errors += [min(float(np.linalg.norm(np.asarray(r.enu_m) - p)) for r in live) for p in truth]
    return math.sqrt(float(np.mean(np.square(errors))))


def test_the_climb_prior_costs_nothing_on_a_drone_climbing_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """A drone climbing at 6 m/s, twice the prior's σ, is confirmed as soon and followed as well
    as under the broad prior (8.6 m RMS either way: it is the vertical process noise, not the
    prior, that sets how a steady climb is followed)."""
    with_prior = _climber_rms(6)
    monkeypatch.setattr(models, "CLIMB_PRIOR_SIGMA_MPS", 15.0)
    assert models.velocity_prior(15.0)[2, 2] == 15.0**2
    broad = _climber_rms(6)
    assert with_prior <= 1.02 * broad, (with_prior, broad)


def test_two_plots_of_one_scan_are_two_targets_however_close() -> None:
    """A plot extractor reports each object it resolves once a scan (`splits_objects` false, the
    `radar` section's default): two targets 50 m apart across the beam at 1.8 km (1.6°, under two
    sigmas of a 1° radar) each get their own track within a second and keep it, where reading
    the second plot as a split of the first left them one track between them."""
    core = _core(SURVEILLANCE)
    rng = np.random.default_rng(5)
    start = np.array([[-25.0, 1800.0, 100.0], [25.0, 1800.0, 100.0]])
    vel = np.array([[0.0, -12.0, 0.0], [0.0, -12.0, 0.0]])
    sigmas = (2.0, math.radians(1.0), math.radians(1.0), 0.0)
    numbers: list[set[int]] = [set(), set()]
    for k, truth in _surveillance_frames(core, start, vel, sigmas, rng, 200):
        if k < 20:  # the first second
            continue
        live = [r for r in core.engine.current() if r.live]
        assert len(live) == 2, f"frame {k}: {len(live)} live tracks for two targets"
        for i, p in enumerate(truth):
            nearest = min(live, key=lambda r: float(np.linalg.norm(np.asarray(r.enu_m) - p)))
            numbers[i].add(nearest.number)
    assert all(len(n) == 1 for n in numbers) and numbers[0] != numbers[1], numbers
    assert not sensor_spec(
        build_config({"node": {"id": "t"}, "sensors": [SURVEILLANCE]}, "t").sensors[0]
    ).splits_objects


def test_a_frame_mixing_detections_with_and_without_range_rate() -> None:
    """One target always with range-rate, one never, one that alternates: each keeps one track
    and is confirmed; the frame is fused as two scans without breaking M-of-N."""
    core = _core(TI)
    rng = np.random.default_rng(8)
    start = np.array([[-30.0, 60.0, 20.0], [30.0, 90.0, 25.0], [0.0, 140.0, 30.0]])
    vel = np.array([[3.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, -4.0, 0.0]])
    sigmas = (0.3, math.radians(1.0), math.radians(1.5), 0.2)
    numbers: list[set[int]] = [set(), set(), set()]
    for k in range(120):
        t = 50.0 + k * 0.05
        truth = start + vel * (k * 0.05)
        has_rate = (True, False, k % 2 == 0)
        batch = [
            _detection("ti", t, p, v, rng, sigmas, rate)
            for p, v, rate in zip(truth, vel, has_rate, strict=True)
        ]
        core.step(t, batch)
        if k == 10:
            assert len([r for r in core.engine.current() if r.live]) == 3, "confirmed within 6 frames"
        for i, p in enumerate(truth):
            for r in core.engine.current():
                if r.live and np.linalg.norm(np.asarray(r.enu_m) - p) < 5.0:
                    numbers[i].add(r.number)
    assert all(len(n) == 1 for n in numbers), numbers
    assert len([r for r in core.engine.current() if r.live]) == 3
    assert core.engine.counters.without_range_rate == 120 + 60
    assert _all_finite(core)


def test_nan_or_missing_range_rate_never_reaches_the_state() -> None:
    """NaN, infinite or None range-rate (or its sigma) is absent: the detection is fused in 3-D.
    A NaN range or angle, or a sigma that is not a positive number, drops the detection."""
    core = _core(TI)
    rng = np.random.default_rng(4)
    p0, v = np.array([10.0, 80.0, 20.0]), np.array([2.0, -1.0, 0.0])
    sigmas = (0.3, math.radians(1.0), math.radians(1.5), 0.2)
    spoilt_rate = [
        {"radial_mps": math.nan},
        {"sigma_radial_mps": math.nan},
        {"radial_mps": math.inf},
        {"radial_mps": None, "sigma_radial_mps": None},
        {"sigma_radial_mps": -1.0},
    ]
    garbage = [
        {"range_m": math.nan},
        {"az_rad": math.nan},
        {"el_rad": math.inf},
        {"sigma_range_m": math.nan},
        {"sigma_az_rad": 0.0},
        {"sigma_el_rad": math.inf},
        {"range_m": -3.0},
    ]
    frames = 60
    for k in range(frames):
        t = 20.0 + k * 0.05
        good = _detection("ti", t, p0 + v * (k * 0.05), v, rng, sigmas)
        fields = {f: getattr(good, f) for f in good.__dataclass_fields__}
        batch = [RadarDetection(**(fields | spoilt_rate[k % len(spoilt_rate)]))]
        batch += [RadarDetection(**(fields | bad)) for bad in garbage]
        core.step(t, batch)
        assert _all_finite(core), f"frame {k}"
    counters = core.engine.counters
    assert counters.invalid == frames * len(garbage)
    assert counters.without_range_rate == frames
    live = [r for r in core.engine.current() if r.live]
    assert len(live) == 1
    assert np.linalg.norm(np.asarray(live[0].enu_m) - (p0 + v * ((frames - 1) * 0.05))) < 3.0
    assert all(math.isfinite(c) for row in live[0].pos_cov_enu_m2 for c in row)


def test_a_radar_declared_without_range_rate_ignores_radial_values() -> None:
    """Whatever a radar configured with `range_rate = false` puts in the radial field (here a
    constant +40 m/s that contradicts the motion) is not trusted."""
    core = _core(SURVEILLANCE)
    rng = np.random.default_rng(6)
    p0, v = np.array([0.0, 800.0, 80.0]), np.array([0.0, -10.0, 0.0])
    sigmas = (2.0, math.radians(1.0), math.radians(1.0), 0.3)
    for k in range(100):
        t = 5.0 + k * 0.05
        d = _detection("surv", t, p0 + v * (k * 0.05), v, rng, sigmas, True, RADAR_UP_M)
        fields = {f: getattr(d, f) for f in d.__dataclass_fields__}
        core.step(t, [RadarDetection(**(fields | {"radial_mps": 40.0}))])
    assert core.engine.counters.without_range_rate == 100
    (track,) = [r for r in core.engine.current() if r.live]
    assert abs(track.vel_enu_mps[1] - v[1]) < 3.0


def test_a_radar_with_range_rate_uses_the_4d_model() -> None:
    radar = SURVEILLANCE | {"range_rate": True, "range_rate_sigma_mps": 0.5}
    core = _core(radar)
    rng = np.random.default_rng(2)
    p0, v = np.array([0.0, 800.0, 80.0]), np.array([0.0, -10.0, 0.0])
    for k in range(40):
        t = 5.0 + k * 0.05
        d = _detection("surv", t, p0 + v * (k * 0.05), v, rng, (2.0, 0.017, 0.017, 0.5), True, RADAR_UP_M)
        core.step(t, [d])
    assert core.engine.counters.without_range_rate == 0
    assert len([r for r in core.engine.current() if r.live]) == 1


# -- the `radar` sensor section -------------------------------------------------------------------


def test_radar_section_gives_fusion_a_radar_sensor_with_its_figures() -> None:
    config = build_config({"node": {"id": "t"}, "sensors": [SURVEILLANCE]}, "test")
    (section,) = config.sensors
    assert isinstance(section, GenericRadarSensor)
    spec = sensor_spec(section)
    assert isinstance(spec, RadarSensor)
    assert spec.sensor_id == "surv"
    assert (spec.min_range_m, spec.max_range_m) == (300.0, 2500.0)
    assert spec.fov_az_rad == pytest.approx(math.radians(60.0))
    assert spec.fov_el_rad == pytest.approx(math.radians(30.0))
    assert spec.range_sigma_m == 2.0
    assert spec.az_sigma_rad == pytest.approx(math.radians(1.0))
    assert spec.el_sigma_rad == pytest.approx(math.radians(1.0))
    assert spec.range_rate is False and spec.range_rate_sigma_mps is None
    assert spec.scan_rate_hz == 20.0
    assert spec.false_alarms_per_scan == 0.5
    assert spec.splits_objects is False  # a plot extractor: one plot per object
    assert np.allclose(spec.pose.offset_enu_m, [0.0, 0.0, RADAR_UP_M])

    doppler = build_config(
        {"node": {"id": "t"}, "sensors": [SURVEILLANCE | {"range_rate": True, "range_rate_sigma_mps": 0.4}]},
        "test",
    )
    spec = sensor_spec(doppler.sensors[0])
    assert isinstance(spec, RadarSensor)
    assert spec.range_rate is True and spec.range_rate_sigma_mps == 0.4
    assert spec.unambiguous_range_rate_mps is None  # not stated: it resolves the ambiguity
    wraps = SURVEILLANCE | {
        "range_rate": True,
        "range_rate_sigma_mps": 0.4,
        "unambiguous_range_rate_mps": 12.0,
    }
    spec = sensor_spec(build_config({"node": {"id": "t"}, "sensors": [wraps]}, "test").sensors[0])
    assert isinstance(spec, RadarSensor) and spec.unambiguous_range_rate_mps == 12.0


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"min_range_m": 2500},
            "sensors[0] (env CUAS_SENSORS): min_range_m must be below max_range_m",
        ),
        ({"range_rate": True}, "range_rate = true needs range_rate_sigma_mps"),
        ({"range_sigma_m": None}, "sensors[0].range_sigma_m (env CUAS_SENSORS): required key is missing"),
        ({"az_sigma_deg": 0}, "sensors[0].az_sigma_deg (env CUAS_SENSORS): Input should be greater than 0"),
        ({"rate_hz": None}, "sensors[0].rate_hz (env CUAS_SENSORS): required key is missing"),
        ({"port": "/dev/ttyUSB0"}, "sensors[0].port (env CUAS_SENSORS): unknown key"),
        (
            {"range_rate": True, "range_rate_sigma_mps": 0.3, "unambiguous_range_rate_mps": math.inf},
            "sensors[0].unambiguous_range_rate_mps (env CUAS_SENSORS): Input should be a finite number",
        ),
    ],
)
def test_radar_section_problems_are_named(change: dict[str, Any], problem: str) -> None:
    sensor = {k: v for k, v in (SURVEILLANCE | change).items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        build_config({"node": {"id": "t"}, "sensors": [sensor]}, "test")
    assert any(p.startswith(problem) or problem in p for p in caught.value.problems), caught.value.problems


def test_radar_section_passes_config_check(tmp_path: Path) -> None:
    """The full check (what `run` checks before it connects) accepts the section and counts it."""
    lines = [
        f'[node]\nid = "mast-7"\nstate_dir = "{tmp_path / "state"}"\n',
        "[[sensors]]",
        *(f"{k} = {v!r}".replace("'", '"') for k, v in SURVEILLANCE.items() if k != "mount"),
        "mount = { offset_m = [0.0, 0.0, 5.0] }",
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "OK: node mast-7, 1 sensor(s)" in result.stdout


def test_run_says_why_a_radar_sensor_gives_nothing() -> None:
    """`run` builds the sensor (the config is valid) but opening it, with no input transport,
    raises a clear error: an `OSError`, so supervision logs one line and keeps it `down`."""
    config = build_config({"node": {"id": "t"}, "sensors": [SURVEILLANCE]}, "test")
    driver = build_driver(config.sensors[0], SystemClock())
    assert (driver.sensor_id, driver.kind) == ("surv", "radar")
    with pytest.raises(NoRadarInput, match="cuas-node track") as caught:
        driver.open()
    assert isinstance(caught.value, OSError) and isinstance(caught.value, UnsupportedSensor)
    assert driver.read() == []
    assert driver.health().sensor_id == "surv"


# -- a TI board's figures, from its chirp profile -------------------------------------------------


def _ti_spec(**keys: Any) -> RadarSensor:
    config = build_config({"node": {"id": "t"}, "sensors": [TI | keys]}, "test")
    assert isinstance(config.sensors[0], TiMmwaveSensor)
    spec = sensor_spec(config.sensors[0])
    assert isinstance(spec, RadarSensor)
    return spec


def test_ti_figures_come_from_the_shipped_profile() -> None:
    """iwr6843_drone.cfg: 0.45 m / 0.63 m/s resolution, 50 ms frames, range CFAR from 0.25 m at
    13 dB; the clustering's sigma at 13 dB is resolution / sqrt(2·10^1.3), floored at half a cell."""
    spec = _ti_spec()
    assert spec.scan_rate_hz == pytest.approx(20.0)
    assert spec.min_range_m == pytest.approx(0.25)
    assert spec.range_rate is True
    assert spec.splits_objects is True  # the node's clustering may cut one object's cloud in two
    assert spec.range_sigma_m == pytest.approx(0.5 * 0.4504, rel=1e-3)
    assert spec.range_rate_sigma_mps == pytest.approx(0.5 * 0.6321, rel=1e-3)
    assert spec.az_sigma_rad == pytest.approx(0.25 / math.sqrt(2 * 10**1.3), rel=1e-6)
    # The dataclass defaults are the same figures (fusion used without a config).
    default = RadarSensor("r", spec.pose, 150.0)
    for name in ("range_sigma_m", "az_sigma_rad", "el_sigma_rad", "range_rate_sigma_mps", "scan_rate_hz"):
        assert getattr(default, name) == pytest.approx(getattr(spec, name), rel=2e-3), name
    # An xWR1642 measures no elevation: its sigma is the broad beam's.
    assert _ti_spec(model="xwr1642").el_sigma_rad == pytest.approx(math.radians(15.0))
    # Radial speeds wrap past the profile's maximum velocity, lambda / (4 T_loop).
    assert spec.unambiguous_range_rate_mps == pytest.approx(10.11, abs=0.01)
    assert default.unambiguous_range_rate_mps is None  # made-up measurements do not wrap
    assert _ti_spec(model="xwr1642").unambiguous_range_rate_mps == pytest.approx(7.24, abs=0.01)


def test_ti_figures_follow_a_configured_profile(tmp_path: Path) -> None:
    from cuas_node.drivers.radar.ti_cli import load_profile

    text, _ = load_profile(None, "iwr6843")
    slow = text.replace("frameCfg 0 2 32 0 50 1 0", "frameCfg 0 2 32 0 100 1 0")
    slow = slow.replace("cfarFovCfg -1 0 0.25 100", "cfarFovCfg -1 0 1.5 100")
    assert slow != text
    cfg = tmp_path / "slow.cfg"
    cfg.write_text(slow, encoding="ascii")
    spec = _ti_spec(cfg_file=str(cfg))
    assert spec.scan_rate_hz == pytest.approx(10.0)
    assert spec.min_range_m == pytest.approx(1.5)
    # An unreadable profile (config check reports it) leaves fusion the shipped profile's figures.
    assert _ti_spec(cfg_file=str(tmp_path / "missing.cfg")).scan_rate_hz == pytest.approx(20.0)


@pytest.mark.parametrize("value", ["inf", "nan", 1e300, -1.0])
def test_a_radar_section_with_an_impossible_false_alarm_rate_is_refused_by_name(value: Any) -> None:
    """`false_alarms_per_scan` sets the clutter density and the confirmation bar: infinite
    crashed `track` (make_room's ceil of infinity) and 1e300 confirmed nothing, ever."""
    sensor = {**SURVEILLANCE, "false_alarms_per_scan": float(value)}
    with pytest.raises(ConfigError, match="false_alarms_per_scan"):
        build_config({"node": {"id": "t"}, "sensors": [sensor]}, "t")


def test_a_1_hz_radar_reads_a_straight_flyers_speed_without_bias() -> None:
    """Ten targets flying straight at 15 m/s, 2.5-3.5 km from a 1 Hz radar of 1° and 10 m: over
    the last three of five minutes their tracks' mean speed is within 3 % of the truth, and
    their positions are not behind them. The turning models' velocities, mixed as vectors, were
    shorter than every one of them each scan (`tracks.keep_speed`): 10 % slow, 8 m behind."""
    radar = {
        **SURVEILLANCE,
        "max_range_m": 5000,
        "rate_hz": 1,
        "range_sigma_m": 10.0,
        "false_alarms_per_scan": 1,
    }
    core = _core(radar)
    rng = np.random.default_rng(11)
    n = 10
    bearing = np.radians(np.linspace(-40.0, 40.0, n))
    start = np.stack([3000.0 * np.sin(bearing), 3000.0 * np.cos(bearing), np.full(n, 200.0)], axis=1)
    heading = rng.uniform(0.0, 2.0 * math.pi, n)
    vel = np.stack([15.0 * np.sin(heading), 15.0 * np.cos(heading), np.zeros(n)], axis=1)
    sigmas = (10.0, math.radians(1.0), math.radians(1.0), 0.0)
    speeds, along = [], []
    for k in range(300):
        truth = start + vel * k
        core.step(
            float(k),
            [
                _detection("surv", float(k), p, v, rng, sigmas, False, RADAR_UP_M)
                for p, v in zip(truth, vel, strict=True)
            ],
        )
        if k < 120:
            continue
        for r in core.engine.current():
            if r.status != "confirmed":
                continue
            i = int(np.argmin(np.linalg.norm(truth - np.asarray(r.enu_m), axis=1)))
            speeds.append(float(np.hypot(*r.vel_enu_mps[:2])))
            along.append(float((np.asarray(r.enu_m[:2]) - truth[i, :2]) @ vel[i, :2] / 15.0))
    assert len(speeds) > 0.9 * 180 * n
    assert abs(np.mean(speeds) / 15.0 - 1.0) < 0.03, np.mean(speeds)
    assert np.mean(along) > -3.0, np.mean(along)
