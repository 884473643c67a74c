"""Nothing real is below the ground: ground-bounce images never become tracks and no published
state goes below the ground (fusion/ground.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.fusion.ground import (
    EARTH_RADIUS_M,
    Ground,
    mirror_images,
    radar_height_sigma,
    radar_points_enu,
)
from cuas_node.kernel.measurement import GpsFix, RadarDetection
from cuas_node.kernel.pose import Pose, cartesian_to_spherical

RADAR_UP_M = 3.0  # the radar on a 3 m mast; the node's reference point is the mast foot
S = (0.15, math.radians(1.0), math.radians(2.0), 0.1)
RNG = np.random.default_rng(5)


@pytest.fixture(autouse=True)
def _same_noise_whatever_ran_before() -> None:
    """Every test draws its noise from the same start, whatever ran before it in this process
    (pytest-xdist spreads the tests over workers in any order)."""
    global RNG
    RNG = np.random.default_rng(5)


def _core(**node: Any) -> NodeCore:
    data = {
        "node": {"id": "t", "position": {"lat": 52.0, "lon": 4.3, "alt_m": 10.0}, **node},
        "fusion": {"reorder_window_s": 0.0},
        "sensors": [
            {"kind": "ti-mmwave", "id": "radar", "port": "/dev/null", "max_range_m": 300,
             "mount": {"offset_m": [0.0, 0.0, RADAR_UP_M]}},
            {"kind": "nmea", "id": "gps", "port": "/dev/null", "mount": {"offset_m": [0.0, 0.0, 2.0]}},
        ],
    }  # fmt: skip
    return NodeCore(core_setup(build_config(data, "test")))


def _detection(t: float, enu: np.ndarray, vel: np.ndarray) -> RadarDetection:
    rel = enu - np.array([0.0, 0.0, RADAR_UP_M])
    r, az, el = cartesian_to_spherical(rel)
    noisy = RNG.normal([r, az, el, float(rel @ vel / r)], S)
    return RadarDetection("radar", t, 0.0, *map(float, noisy), *S, snr_db=20.0, n_points=3, extent_m=0.4)


def test_ground_height_follows_the_earths_curvature() -> None:
    ground = Ground(-2.0)
    height = ground.height(np.array([[0.0, 0.0, 0.0], [10_000.0, 0.0, 0.0]]))
    assert height[0] == 2.0
    assert math.isclose(height[1], 2.0 + 10_000.0**2 / (2 * EARTH_RADIUS_M))  # 7.8 m of bulge
    assert ground.impossible(np.array([[0.0, 100.0, -20.0]]), np.array([4.0])).tolist() == [True]
    assert ground.impossible(np.array([[0.0, 100.0, -20.0]]), np.array([8.0])).tolist() == [False]


def test_radar_points_height_sigma_comes_from_the_measurement_errors() -> None:
    pose = Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0))
    z = np.array([[100.0, 0.0, 0.0, 0.0]])
    enu, sigma_up = radar_points_enu(z, pose), radar_height_sigma(z, np.array(S)[None, :], pose)
    assert np.allclose(enu, [[0.0, 100.0, 0.0]])
    assert math.isclose(sigma_up[0], 100.0 * S[2], rel_tol=1e-6)  # r · σ_el at zero elevation


def test_a_ground_bounce_image_never_becomes_a_track() -> None:
    """A drone 25 m up at 120 m, and its mirror image 25 m below the ground in a third of the
    frames: one track, the real one; the images are counted as below-ground clutter."""
    core = _core()
    v = np.array([3.0, 0.0, 0.0])
    for k in range(100):
        t = k * 0.1
        drone = np.array([-15.0, 120.0, 25.0]) + v * t
        batch = [_detection(t, drone, v)]
        if k % 3 == 0:
            image = drone * np.array([1.0, 1.0, -1.0])
            batch.append(_detection(t, image, v * np.array([1.0, 1.0, -1.0])))
        core.step(t, batch)
    tracks = core.tracks_now()
    assert len(tracks) == 1 and abs(tracks[0].enu_m[2] - 25.0) < 3.0
    assert core.counters.below_ground >= 30


def test_images_too_uncertain_to_be_impossible_are_known_by_their_target() -> None:
    """A bird 30 m up at 170 m seen at low SNR (elevation to 7°: 20 m in height), its image in
    every frame: each image alone is within a sigma of the ground, so only the bird in the same
    frame, at the image's place and mirrored height, moving alike, tells what it is. Before
    that, the images built a track of their own at ground level beside the bird's."""
    core = _core()
    low_snr = (0.15, 0.07, 0.12, 0.05)
    v = np.array([-6.0, 2.0, 0.0])

    def seen(t: float, enu: np.ndarray, vel: np.ndarray) -> RadarDetection:
        rel = enu - np.array([0.0, 0.0, RADAR_UP_M])
        r, az, el = cartesian_to_spherical(rel)
        noisy = RNG.normal([r, az, el, float(rel @ vel / r)], low_snr)
        return RadarDetection("radar", t, 0.0, *map(float, noisy), *low_snr, snr_db=8.0, n_points=2)

    for k in range(150):
        t = k * 0.1
        bird = np.array([100.0, 137.0, 30.0]) + v * t
        core.step(t, [seen(t, bird, v), seen(t, bird * [1.0, 1.0, -1.0], v * [1.0, 1.0, -1.0])])
        live = [tr for tr in core.tracks_now() if tr.live]
        assert len(live) <= 1, [tr.enu_m for tr in live]
    assert len(live) == 1 and np.linalg.norm(np.asarray(live[0].enu_m) - bird) < 30.0
    assert core.counters.below_ground >= 100


def test_mirror_images_needs_a_partner_above_that_moves_alike() -> None:
    ground = Ground(0.0)
    target, image = [50.0, 140.0, 18.0], [50.0, 141.0, -16.0]
    up, across = np.array([30.0, 30.0]), np.array([10.0, 10.0])
    enu = np.array([image, target])
    assert mirror_images(ground, enu, up, across).tolist() == [True, False]
    moving = np.array([-4.0, -4.1])
    assert mirror_images(ground, enu, up, across, moving, np.full(2, 0.1), 3.0).tolist() == [True, False]
    # A low drone's noisy detection below the ground beside a building's (zero Doppler): real.
    static = np.array([-4.0, 0.0])
    assert mirror_images(ground, enu, up, across, static, np.full(2, 0.1), 3.0).tolist() == [False, False]
    assert mirror_images(ground, enu[:1], up[:1], across[:1]).tolist() == [False]  # no partner
    far = np.array([image, [50.0, 240.0, 18.0]])  # the partner 100 m away, 7 sigma
    assert mirror_images(ground, far, up, across).tolist() == [False, False]


def test_a_descending_track_that_loses_its_target_stays_above_the_ground() -> None:
    core = _core()
    v = np.array([0.0, 0.0, -4.0])  # descending at 4 m/s towards a landing
    for k in range(40):
        t = k * 0.1
        core.step(t, [_detection(t, np.array([10.0, 80.0, 6.0]) + v * t, v)])
    for k in range(40, 60):  # no more detections: the track coasts on
        core.step(k * 0.1, [_detection(k * 0.1, np.array([-80.0, 60.0, 40.0]), np.zeros(3))])
        for tr in core.tracks_now():
            assert Ground(0.0).height(np.array([tr.enu_m]))[0] >= -1e-9, tr


def test_gps_fixes_are_moved_back_from_the_antenna_to_the_reference_point() -> None:
    data = {
        "node": {"id": "t"},
        "fusion": {"reorder_window_s": 0.0},
        "sensors": [
            {"kind": "nmea", "id": "gps", "port": "/dev/null", "mount": {"offset_m": [0.0, 0.0, 2.0]}}
        ],
    }
    core = NodeCore(core_setup(build_config(data, "test")))
    core.step(1.0, [GpsFix("gps", 1.0, 0.0, 52.0, 4.3, 12.0, 0.0, quality=1, hdop=1.0)])
    origin = core.origin()
    assert origin is not None and math.isclose(origin.alt_m, 10.0, abs_tol=1e-6)


def test_a_configured_ground_altitude_moves_the_ground() -> None:
    core = _core(ground_alt_m=-20.0)  # a hilltop: the valley floor is 30 m below the mast foot
    assert core.engine.tracker.ground == Ground(-30.0)
