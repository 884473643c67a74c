"""A radar whose range-rate wraps: a TI board reports a drone's radial speed modulo twice the
profile's unambiguous speed (±10.1 m/s in the shipped IWR6843 profile). The simulated board wraps
as the real one does, at the span of the profile it was sent, and the tracker follows a drone
flying faster than that span along the beam (`gating`, `RadarModel.innovation`)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from cuas_node.drivers.radar.ti_cli import load_profile, parse_cfg, summarise_profile
from cuas_node.drivers.sim.pty import PtyPort
from cuas_node.drivers.sim.radar import SimRadar
from cuas_node.drivers.sim.scenario import SimRadarSpec
from cuas_node.drivers.sim.ti_board import SimTiBoard
from cuas_node.drivers.sim.world import TargetState
from cuas_node.fusion import gating
from cuas_node.fusion.measurement_models import radar_model
from cuas_node.fusion.models import velocity_prior
from cuas_node.fusion.params import FusionParams, RadarSensor
from cuas_node.fusion.sensor_stats import SensorStats
from cuas_node.fusion.tracker import RadarScan, Tracker
from cuas_node.fusion.tracks import Status, TrackTable
from cuas_node.fusion_setup import SHIPPED_IWR6843_MAX_VELOCITY_MPS
from cuas_node.kernel.pose import Pose, cartesian_to_spherical

SIGMAS = np.array([0.23, math.radians(2.3), math.radians(4.7), 0.32])  # the shipped profile's
SPAN = 10.114


def _wrap(v: np.ndarray, span: float) -> np.ndarray:
    return (v + span) % (2.0 * span) - span


def _follow(
    radial: float,
    span: float | None,
    seed: int,
    rate_hz: float = 20.0,
    start_m: float = 90.0,
    duration_s: float = 4.0,
    up: float = 0.15,
    sigmas: np.ndarray = SIGMAS,
) -> tuple[set[int], list[float]]:
    """A drone flying straight along the beam at `radial` m/s (negative: towards the radar) from
    `start_m` (climbing `up` m per m across), Pd 0.9, one false alarm a scan: the numbers of the
    confirmed tracks near it, and the radial speed of the track on it over the last quarter of
    the run."""
    sensor = RadarSensor(
        "radar",
        Pose.from_angles(0, 0, 0, (0, 0, 0)),
        300.0,
        range_sigma_m=float(sigmas[0]),
        az_sigma_rad=float(sigmas[1]),
        el_sigma_rad=float(sigmas[2]),
        range_rate_sigma_mps=float(sigmas[3]),
        unambiguous_range_rate_mps=span,
    )
    tracker = Tracker(FusionParams(), ["radar"])
    rng = np.random.default_rng(seed)
    direction = np.array([0.2, 1.0, up]) / np.linalg.norm([0.2, 1.0, up])
    numbers: set[int] = set()
    speeds: list[float] = []
    for k in range(round(duration_s * rate_hz)):
        t = k / rate_hz
        truth = direction * (start_m + radial * t)
        z = np.empty((0, 4))
        if rng.random() < 0.9:
            r, az, el = cartesian_to_spherical(truth[None, :])
            z = np.column_stack([r, az, el, [radial]]) + rng.normal(size=(1, 4)) * sigmas
        false = np.column_stack(
            [
                rng.uniform(5, 300, 1),
                rng.uniform(-1, 1, 1),
                rng.uniform(-0.6, 0.6, 1),
                rng.uniform(-10, 10, 1),
            ]
        )
        z = np.vstack([z, false])
        if span is not None:
            z[:, 3] = _wrap(z[:, 3], span)
        tracker.process_radar(RadarScan("radar", t, z, np.tile(sigmas, (z.shape[0], 1))), sensor)
        tracker.maintain(t)
        tb = tracker.table
        for s in tracker.publishable(False):
            if tb.status[s] == Status.CONFIRMED and np.linalg.norm(tb.x[s, :3] - truth) < 5.0 + 0.1 * float(
                np.linalg.norm(truth)
            ):  # (cross-range noise)
                numbers.add(int(tb.number[s]))
                if t >= 0.75 * duration_s:
                    speeds.append(float(tb.x[s, 3:] @ truth / np.linalg.norm(truth)))
    return numbers, speeds


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_drone_faster_than_the_span_is_followed_by_one_track_at_its_true_speed(seed: int) -> None:
    """15 m/s towards the radar reads as +5.2 m/s: one track follows it, at -15 m/s. (Without the
    wrapped innovation its plots' range-rate contradicted the range's progress; without the
    second plot's choice of alias it kept +5.2 m/s and lost the drone within frames.)"""
    numbers, speeds = _follow(-15.0, SPAN, seed)
    assert len(numbers) == 1, numbers
    assert speeds and np.median(speeds) == pytest.approx(-15.0, abs=1.0)


@pytest.mark.parametrize(
    ("radial", "span", "rate_hz", "start_m", "duration_s", "up"),
    [
        (35.0, SPAN, 20.0, 30.0, 3.0, 0.15),  # two alias steps (read as -5.5 m/s)
        (22.0, 7.245, 20.0, 30.0, 4.0, 0.15),  # an xWR1642's span, read as +7.5 m/s
        (15.0, SPAN, 1.0, 20.0, 15.0, 0.15),  # 1 Hz: 20 m a scan, outside the gate of the alias read
        (-12.0, SPAN, 5.0, 250.0, 16.0, 0.15),
    ],
)
def test_aliases_at_other_speeds_spans_and_rates(
    radial: float, span: float, rate_hz: float, start_m: float, duration_s: float, up: float
) -> None:
    for seed in (1, 2):
        numbers, speeds = _follow(radial, span, seed, rate_hz, start_m, duration_s, up)
        assert len(numbers) == 1, (seed, numbers)
        assert speeds and np.median(speeds) == pytest.approx(radial, abs=1.5), seed


def test_a_radar_as_coarse_in_range_as_its_alias_step_follows_a_fast_drone_with_one_track() -> None:
    """1 m of range noise at 20 Hz, a ±7 m/s span: an alias step moves a plot 0.7 m, so no one
    plot tells the alias; 25 m/s towards the radar reads as +3 m/s, and the birth prior likes
    +3 and -11 better. The plots together tell it (`alias_evidence`): one track, at -25 m/s, in
    five seeds of six; in seed 3 a run of noise (the first plot 2.6 sigma short) sent the first
    track to -11 m/s, and it lost the drone before its plots told; the second took -25 within
    0.3 s. (Without that, tracks confirmed at the alias the prior liked and lost the drone within
    half a second: 8-11 tracks in 4 s in 15 seeds of 20, 1-3 in the others.)"""
    sigmas = np.array([1.0, math.radians(1.0), math.radians(2.0), 0.2])
    tracks = []
    for seed in range(1, 7):
        numbers, speeds = _follow(-25.0, 7.0, seed, start_m=250.0, sigmas=sigmas)
        assert speeds and np.median(speeds) == pytest.approx(-25.0, abs=1.0), seed
        tracks.append(len(numbers))
    assert sum(tracks) <= 7 and max(tracks) <= 2, tracks


@pytest.mark.parametrize(
    ("start", "velocity", "rate_hz", "within_s"),
    [((0.0, 40.0, 30.0), (0.0, 20.0, 0.0), 1.0, 3.0), ((0.0, 60.0, 40.0), (0.0, 15.0, 0.0), 0.5, 8.0)],
)
def test_a_drone_flying_level_across_an_elevated_beam_is_taken_at_its_alias_soon(
    start: tuple[float, ...], velocity: tuple[float, ...], rate_hz: float, within_s: float
) -> None:
    """A drone 35-37 deg up flying level away (radial 16 or 12 m/s, read as -4 or +12-20.2): its
    birth reads the reported alias as level flight, so a speed an alias up moves its predicted
    elevation as well as its range, by tens of metres at 0.5-1 Hz; the alias is tried where the
    track would then be (predicted, not linearised: linearised, confirmation took 4-7 s at 1 Hz
    and one seed of three never confirmed at 0.5 Hz)."""
    for seed in (1, 2, 3):
        numbers, first = _level(np.array(start), np.array(velocity), rate_hz, seed)
        assert len(numbers) == 1 and first is not None and first <= within_s, (seed, numbers, first)


def _level(
    start: np.ndarray, velocity: np.ndarray, rate_hz: float, seed: int
) -> tuple[set[int], float | None]:
    """Numbers of the confirmed tracks on a drone flying from `start` at `velocity` (Pd 0.9, no
    clutter), and when the first was confirmed."""
    sensor = RadarSensor(
        "radar", Pose.from_angles(0, 0, 0, (0, 0, 0)), 300.0, unambiguous_range_rate_mps=SPAN
    )
    tracker = Tracker(FusionParams(), ["radar"])
    rng = np.random.default_rng(seed)
    numbers: set[int] = set()
    first = None
    for k in range(round(16.0 * rate_hz)):
        t = k / rate_hz
        truth = start + velocity * t
        r, az, el = cartesian_to_spherical(truth[None, :])
        radial = float(velocity @ truth / np.linalg.norm(truth))
        z = np.column_stack([r, az, el, [radial]]) + rng.normal(size=(1, 4)) * SIGMAS
        if rng.random() > 0.9:
            z = np.empty((0, 4))
        z[:, 3] = _wrap(z[:, 3], SPAN)
        tracker.process_radar(RadarScan("radar", t, z, np.tile(SIGMAS, (z.shape[0], 1))), sensor)
        tracker.maintain(t)
        tb = tracker.table
        for s in tracker.publishable(False):
            if tb.status[s] == Status.CONFIRMED and np.linalg.norm(tb.x[s, :3] - truth) < 5.0 + 0.1 * r[0]:
                numbers.add(int(tb.number[s]))
                first = t if first is None else first
    return numbers, first


def test_a_radar_that_resolves_its_ambiguity_follows_the_same_drone() -> None:
    """The same drone, reported at its true radial speed by a radar that does not wrap."""
    numbers, speeds = _follow(-15.0, None, 1)
    assert len(numbers) == 1
    assert np.median(speeds) == pytest.approx(-15.0, abs=1.0)


def test_the_model_wraps_the_range_rate_innovation_to_the_span() -> None:
    pose = Pose.from_angles(0, 0, 0, (0, 0, 0))
    wrapping = radar_model(RadarSensor("r", pose, 100.0, unambiguous_range_rate_mps=10.0))
    nu = wrapping.innovation(np.array([[50.0, 0.1, 0.0, 5.0]]), np.array([[49.0, 0.0, 0.0, -15.0]]))
    assert nu[0, 3] == pytest.approx(0.0, abs=1e-9)  # +5 is -15's alias
    nu = wrapping.innovation(np.array([[50.0, 0.1, 0.0, 9.5]]), np.array([[49.0, 0.0, 0.0, -9.5]]))
    assert nu[0, 3] == pytest.approx(-1.0)  # across the edge: 1 m/s, not 19
    plain = radar_model(RadarSensor("r", pose, 100.0, unambiguous_range_rate_mps=None))
    assert (
        plain.innovation(np.array([[50.0, 0.1, 0.0, 5.0]]), np.array([[49.0, 0.0, 0.0, -15.0]]))[0, 3] == 20.0
    )


def test_the_simulated_board_wraps_radial_speeds_at_its_profiles_span() -> None:
    """The board computes the span of the chirp profile it was sent; the point clouds wrap there."""
    radar = SimRadar(
        SimRadarSpec(kind="ti-mmwave", id="r", rate_hz=20, false_alarms_per_frame=0, static_clutter_points=0),
        3,
    )
    assert radar.max_velocity_mps == pytest.approx(SPAN, abs=1e-3)  # the shipped IWR6843 profile's
    cli = PtyPort()
    node_side = os.open(cli.path, os.O_RDWR | os.O_NOCTTY)  # where the node's driver writes
    try:
        board = SimTiBoard(cli, on_start=radar.restart)  # as the simulator's runner wires them
        text, _ = load_profile(None, "xwr1642")
        for line in [c.text for c in parse_cfg(text) if c.name != "sensorStart"] + ["sensorStart"]:
            os.write(node_side, (line + "\n").encode("ascii"))
            board.poll()
    finally:
        os.close(node_side)
        cli.close()
    assert board.streaming
    expected = summarise_profile(parse_cfg(text)).max_velocity_mps
    assert board.max_velocity_mps == pytest.approx(expected)
    assert radar.max_velocity_mps == pytest.approx(expected)
    state = TargetState(
        ["d"], ["quad"], np.array([0.1]), np.array([[0.0, 30.0, 3.0]]), np.array([[0.0, -12.0, 0.0]])
    )
    pts, _ = radar.points(state)
    assert pts.shape[0] >= 1
    assert np.all(np.abs(pts[:, 3]) <= expected)
    assert np.median(pts[:, 3]) == pytest.approx(-12.0 + 2 * expected, abs=0.5)  # -12 read as +2.5


def test_the_shipped_profiles_span_is_the_fallbacks() -> None:
    """`fusion_setup` keeps the shipped IWR6843 profile's span for a TI board whose profile cannot
    be read at all (the `RadarSensor` defaults are that profile's figures)."""
    text, _ = load_profile(None, "iwr6843")
    shipped = summarise_profile(parse_cfg(text)).max_velocity_mps
    assert pytest.approx(shipped, abs=1e-3) == SHIPPED_IWR6843_MAX_VELOCITY_MPS


def test_the_alias_a_first_plot_leaves_open_costs_its_track_at_the_second() -> None:
    """A slow drone (2 m/s along the beam) through a radar whose range-rate wraps at ±10.1 m/s:
    its first plot could be any alias within the birth prior, so its second counts for less by
    −ln of the prior weight of the alias taken (the speeds 2 + 20.2·k m/s within 3 sigmas of the
    prior along that line of sight), against the same plots from a radar that does not wrap."""
    direction = np.array([0.2, 1.0, 0.15]) / np.linalg.norm([0.2, 1.0, 0.15])
    scores = []
    for span in (None, SPAN):
        sensor = RadarSensor(
            "radar", Pose.from_angles(0, 0, 0, (0, 0, 0)), 300.0, unambiguous_range_rate_mps=span
        )
        tracker = Tracker(FusionParams(), ["radar"])
        for k in range(2):
            r, az, el = cartesian_to_spherical((direction * (60.0 + 2.0 * 0.05 * k))[None, :])
            z = np.column_stack([r, az, el, [2.0]])
            tracker.process_radar(RadarScan("radar", 0.05 * k, z, SIGMAS[None, :]), sensor)
        (slot,) = tracker.table.active()
        scores.append(float(tracker.table.score[slot]))
    sigma2 = direction @ velocity_prior(15.0) @ direction
    speeds = 2.0 + 2.0 * SPAN * np.arange(-3, 4)
    weights = np.exp(-0.5 * speeds**2 / sigma2)[np.abs(speeds) <= 3.0 * np.sqrt(sigma2)]
    assert scores[0] - scores[1] == pytest.approx(-math.log(weights.max() / weights.sum()), abs=0.01)


def test_a_wrapping_radars_false_alarms_spread_over_twice_its_span_at_most() -> None:
    """Range-rates reported over ±20 m/s by a radar configured to wrap at ±10.1 m/s (a generator
    that does not wrap its false alarms) fold into 20.2 m/s once the innovation is wrapped: the
    clutter density a hit's score divides by is over that, not over the 40 m/s the plots seem to
    spread (a benchmark's clutter alone confirmed 43 false tracks an hour, six times Wald's bound,
    while the density was taken over the unfolded spread)."""
    pose = Pose.from_angles(0, 0, 0, (0, 0, 0))
    rng = np.random.default_rng(5)
    for span in (SPAN, None):
        model = radar_model(RadarSensor("r", pose, 200.0, unambiguous_range_rate_mps=span))
        stats = SensorStats(false_alarms=50.0, detection_probability=0.9)
        for _ in range(50):
            z = np.column_stack(
                [
                    rng.uniform(1.0, 200.0, 50),
                    rng.uniform(-1.0, 1.0, 50),
                    rng.uniform(-0.7, 0.7, 50),
                    rng.uniform(-20.0, 20.0, 50),
                ]
            )
            stats.scan(0, model, 0.0, z, np.tile(np.diag(SIGMAS**2), (50, 1, 1)))
        seen = float(stats.doppler_span[0])  # the plots' spread: near 40 m/s
        assert seen > 35.0
        spread = seen if span is None else 2.0 * SPAN
        volume = model.coverage.volume() * spread
        assert stats.clutter_density(0, model, 4, configured=2.0) == pytest.approx(50.0 / volume)


def test_an_alias_whose_plot_lies_across_the_azimuths_seam_is_taken() -> None:
    """The alias a young track's second plot fits is chosen on its residuals, the azimuth's
    wrapped: an alias that would put the track behind the radar shifts its predicted azimuth by
    about ±π (its sign a matter of rounding), and the plot across the seam from it is a few
    milliradians off, not 2π (a review found another alias taken on that 2π error)."""
    table = TrackTable(8, 3, np.full(3, 1.0 / 3.0))
    table.updates[0] = 1  # its second plot
    reach = 1
    young = np.array([True])
    spread = np.array([[0.0, 1.0, 0.0]])
    shift = np.zeros((1, 2 * reach + 1, 3))
    shift[0, 2] = [4.0, -math.pi + 0.01, 0.0]  # alias +1: 4 m further, across the seam
    shift[0, 0] = [-4.0, 0.0, 0.0]
    log_prior = np.log(np.array([[0.2, 0.6, 0.2]]))
    penalty = np.maximum(2.0 * (log_prior[:, reach : reach + 1] - log_prior), 0.0)
    aliasing = gating._Aliasing(young, spread, shift, reach, SPAN, log_prior, penalty)
    nu = np.array([[4.0, math.pi - 0.01, 0.0, 0.0]])  # the plot: at alias +1's place
    r = np.diag(SIGMAS**2)[None]
    alias, _, _ = gating._alias_choice(
        table, np.array([0]), np.array([0]), nu, np.diag(r[0])[None], r, aliasing
    )
    assert alias is not None
    assert alias[0] @ spread[0] == pytest.approx(2.0 * SPAN)  # alias +1 taken
    assert abs(nu[0, 1]) < 0.05  # its azimuth residual across the seam
