"""Fusion: measurement-model Jacobians, and the tracker on synthetic radar scans with known truth."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cuas_node.assembly import core_setup
from cuas_node.config import Config, build_config
from cuas_node.core.step import NodeCore
from cuas_node.fusion import late
from cuas_node.fusion.models import largest_eigenvalue, radar_predict, radar_to_state
from cuas_node.fusion.params import FusionParams, RadarSensor
from cuas_node.fusion.tracker import RadarScan, Tracker
from cuas_node.fusion.tracks import TrackTable
from cuas_node.kernel.measurement import GpsFix, RadarDetection
from cuas_node.kernel.pose import Pose, cartesian_to_spherical

SIGMAS = np.array([0.2, math.radians(1.0), math.radians(2.0), 0.1])


def test_radar_jacobian_matches_numerical_derivative() -> None:
    pose = Pose.from_angles(37.0, 8.0, -5.0, (1.0, -2.0, 3.0))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 6)) * [50, 50, 20, 5, 5, 2] + [0, 80, 20, 0, 0, 0]
    _, h = radar_predict(x, pose)
    eps = 1e-6
    numeric = np.zeros_like(h)
    for i in range(6):
        dx = np.zeros(6)
        dx[i] = eps
        zp, _ = radar_predict(x + dx, pose)
        zm, _ = radar_predict(x - dx, pose)
        numeric[:, :, i] = (zp - zm) / (2 * eps)
    assert np.allclose(h, numeric, atol=1e-6)


def test_initial_state_inverts_the_measurement_model() -> None:
    pose = Pose.from_angles(-30.0, 5.0, 2.0, (0.0, 0.0, 2.0))
    z = np.array([[80.0, 0.3, 0.1, -4.0], [20.0, -0.5, 0.4, 2.0]])
    x, p = radar_to_state(z, np.tile(SIGMAS, (2, 1)), pose, 15.0)
    z_back, _ = radar_predict(x, pose)
    assert np.allclose(z_back, z, atol=1e-9)
    assert np.all(np.linalg.eigvalsh(p) > 0)


def _scan(
    pose: Pose,
    truth_enu: np.ndarray,
    truth_vel: np.ndarray,
    t: float,
    rng: np.random.Generator,
    clutter: int = 0,
) -> RadarScan:
    rel = pose.enu_to_sensor(truth_enu)
    r, az, el = cartesian_to_spherical(rel)
    radial = np.einsum("ij,ij->i", rel, truth_vel @ pose.rotation) / r
    z = np.column_stack([r, az, el, radial]) + rng.normal(size=(len(r), 4)) * SIGMAS
    if clutter:
        fake = np.column_stack(
            [
                rng.uniform(5, 150, clutter),
                rng.uniform(-1, 1, clutter),
                rng.uniform(-0.6, 0.6, clutter),
                rng.uniform(-10, 10, clutter),
            ]
        )
        z = np.vstack([z, fake])
    return RadarScan("radar", t, z, np.tile(SIGMAS, (z.shape[0], 1)))


def test_crossing_targets_keep_identity_and_clutter_never_confirms() -> None:
    params = FusionParams()
    tracker = Tracker(params, ["radar"])
    pose = Pose.from_angles(0, 0, 0, (0, 0, 0))
    geometry = RadarSensor("radar", pose, 200.0)
    rng = np.random.default_rng(7)
    v = np.array([[5.0, 0.0, 0.0], [-5.0, 0.0, 0.5]])
    start = np.array([[-60.0, 70.0, 30.0], [60.0, 74.0, 25.0]])
    owner: dict[int, set[int]] = {0: set(), 1: set()}
    for k in range(240):  # 24 s at 10 Hz; they pass within a few metres of each other at t = 12 s
        t = k * 0.1
        truth = start + v * t
        tracker.process_radar(_scan(pose, truth, v, t, rng, clutter=3), geometry)
        tracker.maintain(t)
        slots = tracker.publishable(False)
        for s in slots:
            d = np.linalg.norm(truth - tracker.table.x[s, :3], axis=1)
            owner[int(np.argmin(d))].add(int(tracker.table.number[s]))
            assert d.min() < 10.0, "a confirmed track strays from every target: a clutter track"
    # one stable identity per target, no swaps, no fragments
    assert all(len(ids) == 1 for ids in owner.values()), owner
    assert owner[0] != owner[1]


def _core(**fusion: object) -> NodeCore:
    config: Config = build_config(
        {
            "node": {"id": "t"},
            "fusion": fusion,
            "sensors": [
                {"kind": "ti-mmwave", "id": "radar", "port": "/dev/null"},
                {"kind": "nmea", "id": "gps", "port": "/dev/null"},
            ],
        },
        "test",
    )
    return NodeCore(core_setup(config))


def _detection(t: float, range_m: float = 50.0) -> RadarDetection:
    return RadarDetection("radar", t, 0.0, range_m, 0.1, 0.05, 1.0, 0.2, 0.02, 0.04, 0.1, 20.0)


def test_core_waits_for_position_then_tracks_and_deletes_once() -> None:
    core = _core(confirm_m=3, confirm_n=4, delete_after_s=1.0, reorder_window_s=0.0)
    assert core.step(100.0, [_detection(100.0)]).tracks is None
    assert core.counters.waiting_for_position == 1
    result = core.step(100.0, [GpsFix("gps", 100.0, 0.0, 52.0, 4.3, 10.0, 47.0, quality=1)])
    assert result.position_changed and result.position is not None
    assert (result.position.lat, result.position.lon, result.position.source) == (52.0, 4.3, "gps")
    assert result.position.alt_m == pytest.approx(57.0)
    results = [core.step(101.0 + k * 0.1, [_detection(101.0 + k * 0.1, 50.0 + 0.01 * k)]) for k in range(6)]
    published = [r for r in results if r.tracks is not None]
    assert published, "a confirmed track must be published"
    # The rate limit (5 Hz by default): never two tracks messages closer than 0.2 s.
    times = [r.t for r in published]
    assert all(b - a >= 0.2 - 1e-9 for a, b in itertools.pairwise(times))
    assert all([tr.status for tr in r.tracks or ()] == ["confirmed"] for r in published)
    track = (published[-1].tracks or ())[0]
    assert track.sensors == ("radar",) and abs(track.lat - 52.0) < 0.001 and len(track.pos_cov_enu_m2) == 3
    deleted = core.step(103.0).tracks
    assert deleted is not None and [(r.number, r.status) for r in deleted] == [(track.number, "deleted")]
    assert core.step(104.0).tracks is None


def test_contested_measurements_get_a_soft_update_and_tracks_survive_a_close_pass() -> None:
    """Two targets pass half a metre apart: while both tracks gate both detections the JPDA-style soft
    update runs (a hard choice there is a guess), and each target keeps exactly one track."""
    params = FusionParams()
    tracker = Tracker(params, ["radar"])
    geometry = RadarSensor("radar", Pose.from_angles(0, 0, 0, (0, 0, 0)), 200.0)
    rng = np.random.default_rng(3)
    soft_rows: list[int] = []
    original = tracker._soft_update

    def spy(active, rows, g, scan, clutter):  # type: ignore[no-untyped-def]
        soft_rows.append(int(rows.size))
        original(active, rows, g, scan, clutter)

    tracker._soft_update = spy  # type: ignore[method-assign]
    v = np.array([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]])
    start = np.array([[-30.0, 60.0, 20.0], [30.0, 60.4, 20.3]])
    owner: dict[int, set[int]] = {0: set(), 1: set()}
    for k in range(200):
        t = k * 0.1
        truth = start + v * t
        keep = rng.random(2) < 0.9
        tracker.process_radar(_scan(geometry.pose, truth[keep], v[keep], t, rng, clutter=2), geometry)
        tracker.maintain(t)
        for s in tracker.publishable(False):
            d = np.linalg.norm(truth - tracker.table.x[s, :3], axis=1)
            owner[int(np.argmin(d))].add(int(tracker.table.number[s]))
    assert max(soft_rows) >= 2, "the close pass never produced a contested cluster"
    assert all(len(ids) == 1 for ids in owner.values()), owner


def test_the_soft_update_keeps_each_tracks_models_and_learns_their_weights() -> None:
    """Two drones hovering 8 m apart at 60 m (3.5 sigmas of a TI board's azimuth), seen at 1 Hz:
    their tracks contest both plots every scan.
    The soft update is an IMM-PDA one: each model weighs the plots by its own prediction, the
    models stay distinct and their weights learn that the drones hover (the quiet model). Collapsed
    to one estimate with the weights left as they were, the weights drifted to uniform, the wide
    turning models' gates took the other drone's plots, and one such track was led away for 35
    scans (tests/test_tracker_generalisation.py's 1 Hz radar, seed 6)."""
    tracker = Tracker(FusionParams(), ["radar"])
    geometry = RadarSensor("radar", Pose.from_angles(0, 0, 0, (0, 0, 0)), 200.0)
    rng = np.random.default_rng(5)
    truth = np.array([[0.0, 60.0, 20.0], [8.0, 60.0, 20.0]])
    soft: list[np.ndarray] = []
    original = tracker._soft_update

    def spy(active, rows, g, scan, clutter):  # type: ignore[no-untyped-def]
        original(active, rows, g, scan, clutter)
        soft.append(active[rows])

    tracker._soft_update = spy  # type: ignore[method-assign]
    errors: list[float] = []
    for k in range(40):
        before = len(soft)
        tracker.process_radar(_scan(geometry.pose, truth, np.zeros((2, 3)), float(k), rng), geometry)
        if len(soft) > before and k >= 20:  # right after this scan's soft update: each model its own
            assert np.all(np.ptp(tracker.table.xm[soft[-1]], axis=1).max(axis=1) > 0.0)
        tracker.maintain(float(k))
        firm = tracker.publishable(False)
        if k >= 30:
            errors.append(
                float(
                    np.linalg.norm(truth[:, None] - tracker.table.x[None, firm, :3], axis=2)
                    .min(axis=1)
                    .mean()
                )
            )
    assert len(soft) >= 10, "the pair was not contested"
    table = tracker.table
    firm = tracker.publishable(False)
    assert firm.size == 2
    assert np.all(table.mu[firm, 0] > 0.6), table.mu[firm]  # the quiet model: they hover (collapsed: 0.33)
    # Over the last 10 scans (seeds 1-10: 1.1-2.1 m; collapsed, the tracks wandered 3.6-5.5 m off).
    assert np.mean(errors) < 2.5, errors


def test_clutter_map_raises_the_bar_where_false_alarms_recur() -> None:
    """A reflector that flickers for a frame or two keeps spawning tentative tracks that die
    unconfirmed; once its cell is hot, a phantom there needs two more hits, so a 4-frame burst
    that confirms on a fresh site (3 of 5) no longer does."""
    geometry = RadarSensor("radar", Pose.from_angles(0, 0, 0, (0, 0, 0)), 200.0)
    spot = np.array([[10.0, 80.0, 2.0]])

    def burst(tracker: Tracker, start: float, frames: int, rng: np.random.Generator) -> bool:
        t = start
        for k in range(frames):
            t = start + k * 0.1
            tracker.process_radar(_scan(geometry.pose, spot, np.zeros((1, 3)), t, rng), geometry)
            tracker.maintain(t)
        confirmed = tracker.publishable(False).size > 0
        tracker.maintain(t + 3.0)  # off again: the track dies
        return confirmed

    params = FusionParams(confirm_m=3, confirm_n=5, tentative_delete_after_s=0.5)
    fresh = Tracker(params, ["radar"])
    assert burst(fresh, 0.0, 4, np.random.default_rng(5)), "on a fresh site a 4-frame burst confirms"
    site = Tracker(params, ["radar"])
    rng = np.random.default_rng(5)
    for n in range(6):
        assert not burst(site, n * 5.0, 2, rng)  # flickers: never confirmed, remembered as clutter
    assert not burst(site, 40.0, 4, rng)


def test_tentative_pool_prunes_the_least_likely_instead_of_refusing_births() -> None:
    """`max_tentative` is a pool, not a door: a flood of one-off detections keeps the pool at its
    size (or at twice the births the radar's learnt false alarms do not explain, if more: a burst of
    new targets all get hypotheses) by
    pruning the least likely tentative hypotheses (lowest track score), and a real target born
    later still gets its track; a birth is refused only when established tracks hold every
    slot."""
    params = FusionParams(max_tentative=10)
    tracker = Tracker(params, ["radar"])
    geometry = RadarSensor("radar", Pose.from_angles(0, 0, 0, (0, 0, 0)), 200.0)
    rng = np.random.default_rng(9)
    flood = np.random.default_rng(19)
    for k in range(40):  # fresh clutter every frame: the old hypotheses linger a frame or two
        frame_rng = rng if k == 39 else flood
        tracker.process_radar(
            _scan(geometry.pose, np.zeros((0, 3)), np.zeros((0, 3)), 0.05 * k - 1.95, frame_rng, clutter=40),
            geometry,
        )
        tentative = int((tracker.table.status == 1).sum())
        assert tentative <= 2 * 40, tentative  # a burst the false-alarm rate does not yet explain
    # Once the radar's false-alarm rate is learnt, the flood is explained: the pool is back to its size.
    assert tentative <= 10, tentative
    assert tracker.births_pruned >= 25 and tracker.initiations_refused == 0
    target = np.array([[5.0, 60.0, 10.0]])
    for k in range(1, 12):  # the target among fresh clutter every frame
        scan = _scan(geometry.pose, target, np.zeros((1, 3)), 0.1 * k, rng, clutter=40)
        tracker.process_radar(scan, geometry)
        tracker.maintain(0.1 * k)
    firm = tracker.publishable(False)
    assert firm.size == 1 and np.linalg.norm(tracker.table.x[firm[0], :3] - target[0]) < 3.0
    assert tracker.initiations_refused == 0
    full = Tracker(FusionParams(max_tracks=4, max_tentative=2), ["radar"])
    full.table.status[:] = 2  # every slot an established track: nothing may be pruned
    full.process_radar(
        _scan(geometry.pose, np.zeros((0, 3)), np.zeros((0, 3)), 0.0, rng, clutter=5), geometry
    )
    assert full.initiations_refused >= 1 and full.births_pruned == 0


def test_the_track_table_grows_to_its_limit_keeping_every_track() -> None:
    """Slots are never moved by growth: every column of a live slot keeps its value, new slots are
    free with the defaults of a new table, and growth stops at `max_tracks`."""
    table = TrackTable(10, 2, (0.5, 0.5), capacity=4)
    rng = np.random.default_rng(3)
    slots = table.allocate(rng.normal(size=(4, 6)), np.tile(np.eye(6), (4, 1, 1)), 1.0, 0, True)
    table.score[slots] = [1.0, 2.0, 3.0, 4.0]
    before = {k: v.copy() for k, v in vars(table).items() if isinstance(v, np.ndarray)}
    assert table.reserve(5) and table.capacity == 10  # 4 → 8 is not enough for 5 more; 16 > limit
    fresh = TrackTable(10, 2, (0.5, 0.5))
    for name, old in before.items():
        if name == "initial_mode":
            continue
        grown = getattr(table, name)
        assert grown.shape[0] == 10, name
        np.testing.assert_array_equal(grown[:4], old, err_msg=name)
        np.testing.assert_array_equal(grown[4:], getattr(fresh, name)[4:], err_msg=name)
    assert not table.reserve(7) and table.capacity == 10  # at its limit: the caller prunes or refuses
    history = late.History(4)
    history.start(table, slots)
    history.grow(table.capacity)
    assert history.t.shape[0] == 10 and np.isinf(history.t[4:]).all()
    np.testing.assert_array_equal(history.x[:4, 0], table.x[:4])


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float64, (4, 3, 3), elements=st.floats(-1e3, 1e3, allow_nan=False)),
    st.floats(0.0, 1e6),
)
def test_largest_eigenvalue_in_closed_form_matches_eigvalsh(m: np.ndarray, shift: float) -> None:
    # Covariances of every scale and shape, including multiples of the identity and rank 1.
    cov = m @ m.transpose(0, 2, 1) + shift * np.eye(3)
    cov[0] = shift * np.eye(3)
    reference = np.linalg.eigvalsh(cov)[:, -1]
    scale = np.maximum(np.abs(cov).max(axis=(1, 2)), 1e-12)
    # A repeated largest eigenvalue costs the closed form ~sqrt(machine epsilon) (arccos near ±1):
    # 1e-7 of the matrix's scale is far below anything a sigma test can notice.
    assert np.all(np.abs(largest_eigenvalue(cov) - reference) <= 1e-7 * scale)


def test_a_frame_with_and_without_range_rate_is_one_look_for_the_learnt_pd() -> None:
    """A radar frame whose target detection lacks range-rate (NaN radial) while its false alarms
    carry one is fused as two scans. The target's track was charged a miss by the full look (the
    larger part) and hit by the other, every frame: the learnt Pd fell to its floor (0.3) while
    the target was detected in every frame, making every later miss weak evidence. Now the part
    that hit it takes its look: Pd stays high and the track confirmed."""
    core = _core(reorder_window_s=0.0)
    core.step(100.0, [GpsFix("gps", 100.0, 0.0, 52.0, 4.3, 10.0, 47.0, quality=1)])
    rng = np.random.default_rng(3)
    for k in range(100):
        t = 100.1 + 0.1 * k
        target = RadarDetection(
            "radar", t, 0.0, 30.0 + 0.05 * k, 0.1, 0.05, math.nan, 0.2, 0.02, 0.04, 0.1, 20.0
        )
        clutter = [
            RadarDetection("radar", t, 0.0, float(r), float(az), 0.0, float(v), 0.2, 0.02, 0.04, 0.1, 10.0)
            for r, az, v in zip(
                rng.uniform(5, 60, 3), rng.uniform(-1, 1, 3), rng.uniform(-5, 5, 3), strict=True
            )
        ]
        core.step(t, [target, *clutter])
    tracker = core.engine.tracker
    assert tracker.stats.pd(tracker.sensor_bits["radar"]) > 0.8
    live = [tr for tr in core.tracks_now() if tr.live]
    assert any(abs(np.linalg.norm(tr.enu_m) - 35.0) < 5.0 for tr in live)


@pytest.mark.usefixtures("pd_from_every_track")  # (its targets move less than 10 cells)
def test_a_target_without_range_rate_among_plots_with_it_is_tracked_at_a_high_learnt_pd() -> None:
    """A radar learns Pd 0.99 from a target with range-rate; a second target whose plots lack it
    appears among more plots that have it. Its track, born of the frame's smaller part, was
    charged a miss by the larger part's look of the same frame: at that Pd one miss is the
    SPRT's rejection, so it was rejected at birth every frame and never tracked."""
    core = _core(reorder_window_s=0.0)
    core.step(100.0, [GpsFix("gps", 100.0, 0.0, 52.0, 4.3, 10.0, 47.0, quality=1)])
    rng = np.random.default_rng(1)
    found = None
    for k in range(100):
        t = 100.1 + 0.1 * k
        frame = [
            RadarDetection("radar", t, 0.0, 20.0 + 0.05 * k, -0.3, 0.05, 0.5, 0.2, 0.02, 0.04, 0.1, 20.0)
        ]
        frame += [
            RadarDetection("radar", t, 0.0, float(r), float(az), 0.0, float(v), 0.2, 0.02, 0.04, 0.1, 10.0)
            for r, az, v in zip(
                rng.uniform(5, 60, 2), rng.uniform(-1, -0.6, 2), rng.uniform(-5, 5, 2), strict=True
            )
        ]
        if k >= 50:  # the second target, no range-rate
            frame.append(
                RadarDetection(
                    "radar", t, 0.0, 35.0 + 0.05 * k, 0.4, 0.05, math.nan, 0.2, 0.02, 0.04, 0.1, 20.0
                )
            )
        core.step(t, frame)
        if k == 49:
            assert core.engine.tracker.stats.pd(core.engine.tracker.sensor_bits["radar"]) > 0.95
        live = [
            tr
            for tr in core.tracks_now()
            if tr.live and abs(np.linalg.norm(tr.enu_m) - 35.0 - 0.05 * k) < 3.0
        ]
        if live and found is None:
            found = k
    assert found is not None and found <= 55
