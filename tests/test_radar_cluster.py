"""Point clustering and the conversion of clusters to RadarDetection."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import ArrayLike

from cuas_node.drivers.radar.cluster import (
    Cluster,
    DopplerBandFilter,
    PointClusterer,
    RadarResolution,
    cluster_points,
    clusters_to_detections,
)
from cuas_node.kernel.measurement import RadarDetection


def blob(center: tuple[float, float, float], doppler: float, n: int, spread: float, seed: int) -> np.ndarray:
    """`n` points of one small object: a few tens of cm across, like a drone's CFAR peaks."""
    rng = np.random.default_rng(seed)
    xyz = np.asarray(center) + rng.uniform(-spread, spread, size=(n, 3))
    return np.column_stack([xyz, doppler + rng.normal(0, 0.05, n)]).astype(np.float32)


def detect(points: np.ndarray, snr: ArrayLike | None, **kwargs: Any) -> list[RadarDetection]:
    clusterer = PointClusterer(**kwargs)
    return clusterer.detections(points, snr, sensor_id="r", t_capture=10.0, t_receive=5.0)


@pytest.mark.parametrize("seed", range(5))
def test_two_targets_3m_apart_at_50m_are_two_detections(seed: int) -> None:
    # Side by side (cross-range), the hard direction: angular cells are metres wide at 50 m.
    a = blob((-1.5, 50.0, 2.0), -6.0, 6, 0.25, seed)
    b = blob((1.5, 50.0, 2.0), -6.0, 6, 0.25, seed + 100)
    points = np.vstack([a, b])
    dets = sorted(detect(points, np.full(12, 20.0)), key=lambda d: d.az_rad)
    assert len(dets) == 2
    assert [d.n_points for d in dets] == [6, 6]
    assert dets[0].az_rad == pytest.approx(math.atan2(-1.5, 50.0), abs=0.01)
    assert dets[1].az_rad == pytest.approx(math.atan2(1.5, 50.0), abs=0.01)
    # Along the line of sight, 3 m apart, too.
    c = blob((0.0, 48.5, 0.0), 4.0, 5, 0.25, seed)
    d = blob((0.0, 51.5, 0.0), 4.0, 5, 0.25, seed + 1)
    assert len(detect(np.vstack([c, d]), np.full(10, 20.0))) == 2


def test_one_target_spread_over_a_range_cell_stays_one() -> None:
    pts = blob((0.5, 50.0, 0.0), 3.0, 8, 0.6, 1)
    dets = detect(pts, np.full(8, 15.0))
    assert len(dets) == 1 and dets[0].n_points == 8
    assert 0.5 < dets[0].extent_m < 2.1


def test_static_wall_is_suppressed() -> None:
    wall = np.array([[x, 20.0, z, 0.0] for x in np.linspace(-8, 8, 40) for z in (0.0, 1.0)], np.float32)
    drone = blob((2.0, 30.0, 3.0), -5.0, 4, 0.2, 2)
    points = np.vstack([wall, drone])
    snr = np.r_[np.full(len(wall), 35.0), np.full(4, 12.0)]
    dets = detect(points, snr)
    assert len(dets) == 1
    assert dets[0].n_points == 4 and dets[0].radial_mps == pytest.approx(-5.0, abs=0.1)
    # With the band disabled the wall is there, as one big object.
    dets_all = detect(points, snr, clutter_filter=DopplerBandFilter(0.0))
    assert len(dets_all) == 2
    assert max(d.extent_m for d in dets_all) > 15.0


def test_doppler_band_is_configurable() -> None:
    slow = np.array([[0.0, 10.0, 0.0, 0.3]], np.float32)
    assert len(cluster_points(slow, [10.0])) == 1
    assert cluster_points(slow, [10.0], doppler_clutter_band_mps=0.5) == []


def test_sigmas_shrink_with_snr_and_hit_their_floors() -> None:
    pts = np.array([[2.0, 20.0, 1.0, 3.0]], np.float32)
    res = RadarResolution.iwr6843()
    snrs = [-6.0, -3.0, 0.0, 60.0]  # the floors are half a cell: only weak echoes sit above them
    dets = [
        PointClusterer().detections(pts, [s], sensor_id="r", t_capture=0, t_receive=0, resolution=res)[0]
        for s in snrs
    ]
    for lo, hi in itertools.pairwise(dets[:3]):
        assert hi.sigma_range_m < lo.sigma_range_m
        assert hi.sigma_az_rad < lo.sigma_az_rad
        assert hi.sigma_el_rad < lo.sigma_el_rad
        assert hi.sigma_radial_mps < lo.sigma_radial_mps
    strong = dets[-1]
    assert strong.sigma_range_m == pytest.approx(res.range_floor_fraction * res.range_res_m)
    assert strong.sigma_az_rad == pytest.approx(res.az_floor_rad)
    assert strong.sigma_radial_mps == pytest.approx(res.doppler_floor_fraction * res.doppler_res_mps)
    weak = dets[0]  # -6 dB: sqrt(2·SNR) ~ 0.7, so more than a resolution cell
    assert weak.sigma_range_m == pytest.approx(res.range_res_m / math.sqrt(2 * 10**-0.6), rel=1e-6)


def test_range_sigma_includes_the_cluster_extent() -> None:
    """A centroid wanders over an object's body: a 2 m cluster is never placed to a few centimetres."""
    res = RadarResolution.iwr6843()
    pts = np.array([[0.0, 30.0, 0.0, 3.0], [0.0, 31.4, 0.0, 3.0]], np.float32)
    det = PointClusterer().detections(
        pts, [40.0, 40.0], sensor_id="r", t_capture=0, t_receive=0, resolution=res
    )[0]
    assert det.extent_m == pytest.approx(1.4)
    assert det.sigma_range_m == pytest.approx(math.hypot(res.range_floor_fraction * res.range_res_m, 0.7))


def test_without_elevation_the_elevation_sigma_is_large() -> None:
    pts = np.array([[0.0, 20.0, 0.0, 3.0]], np.float32)
    det = detect(pts, np.array([40.0]))[0]
    assert det.el_rad == 0.0
    assert det.sigma_el_rad == pytest.approx(RadarResolution().no_elevation_sigma_rad)
    assert det.sigma_el_rad > math.radians(10)


def test_azimuth_sigma_widens_off_boresight() -> None:
    on = detect(np.array([[0.0, 20.0, 0.0, 3.0]], np.float32), [8.0])[0]
    off = detect(np.array([[17.3, 10.0, 0.0, 3.0]], np.float32), [8.0])[0]  # 60 degrees right
    assert off.sigma_az_rad == pytest.approx(2 * on.sigma_az_rad, rel=1e-3)


def test_geometry_follows_the_sensor_frame() -> None:
    """x right, y boresight, z up; azimuth towards +x; positive Doppler = moving away."""
    pts = np.array([[3.0, 3.0, 0.0, 1.5], [0.0, 10.0, 10.0, -2.0], [-4.0, 0.0, 0.0, 0.7]], np.float32)
    dets = detect(pts, [10.0, 10.0, 10.0])
    by_az = sorted(dets, key=lambda d: d.az_rad)
    left, up, right = by_az
    assert right.az_rad == pytest.approx(math.pi / 4) and right.range_m == pytest.approx(math.sqrt(18))
    assert right.radial_mps == pytest.approx(1.5)
    assert up.el_rad == pytest.approx(math.pi / 4) and up.az_rad == pytest.approx(0.0)
    assert up.radial_mps == pytest.approx(-2.0)
    assert left.az_rad == pytest.approx(-math.pi / 2)
    assert all(d.t_capture == 10.0 and d.t_receive == 5.0 and d.sensor_id == "r" for d in dets)


def test_centroid_is_snr_weighted_and_stats_are_per_cluster() -> None:
    pts = np.array([[0.0, 10.0, 0.0, 2.0], [0.5, 10.0, 0.0, 4.0]], np.float32)
    (c,) = cluster_points(pts, [30.0, 10.0])
    assert isinstance(c, Cluster)
    assert c.x_m == pytest.approx(0.5 / 101, rel=1e-6)  # linear power weights 1000 : 10
    assert c.doppler_mps == pytest.approx(3.0)
    assert c.snr_max_db == 30.0 and c.snr_mean_db == pytest.approx(20.0)
    assert c.n_points == 2 and c.extent_m == pytest.approx(0.5)


def test_extreme_snr_does_not_produce_nan() -> None:
    pts = np.array([[0.0, 10.0, 0.0, 2.0], [0.1, 10.0, 0.0, 2.0], [9.0, 30.0, 0.0, 2.0]], np.float32)
    clusters = cluster_points(pts, [3276.7, -3276.8, -3276.8])
    assert len(clusters) == 2
    assert all(np.isfinite([c.x_m, c.y_m, c.z_m]).all() for c in clusters)


def test_missing_snr_counts_as_0_db() -> None:
    pts = np.array([[0.0, 10.0, 0.0, 2.0], [0.4, 10.0, 0.0, 2.0]], np.float32)
    (det,) = detect(pts, None)
    assert det.snr_db == 0.0 and det.sigma_range_m == pytest.approx(math.hypot(0.3 / math.sqrt(2), 0.2))
    (c,) = cluster_points(pts)
    assert c.x_m == pytest.approx(0.2)


def test_min_points_and_empty_input() -> None:
    pts = np.vstack([blob((0, 20, 0), 3.0, 3, 0.1, 0), np.array([[10.0, 20.0, 0.0, 3.0]], np.float32)])
    assert [c.n_points for c in cluster_points(pts, None, min_points=2)] == [3]
    assert cluster_points(np.zeros((0, 4)), None) == []
    assert cluster_points(np.zeros((0, 4)), np.zeros(0)) == []
    with pytest.raises(ValueError):
        cluster_points(pts, [1.0])


def test_doppler_gate_separates_crossing_objects() -> None:
    pts = np.array([[0.0, 20.0, 0.0, 5.0], [0.3, 20.0, 0.0, -5.0]], np.float32)
    assert len(cluster_points(pts, None)) == 2
    assert len(cluster_points(pts, None, doppler_gate_mps=20.0)) == 1


def test_clusters_to_detections_matches_the_fast_path() -> None:
    pts = np.vstack([blob((5, 30, 1), 2.0, 5, 0.3, 4), blob((-5, 40, 0), -2.0, 5, 0.3, 5)])
    snr = np.linspace(5, 25, 10)
    res = RadarResolution()
    fast = PointClusterer().detections(pts, snr, sensor_id="s", t_capture=1.0, t_receive=2.0, resolution=res)
    slow = clusters_to_detections(cluster_points(pts, snr), res, sensor_id="s", t_capture=1.0, t_receive=2.0)
    assert fast == slow and len(fast) == 2


def test_one_target_at_the_edge_of_the_doppler_span_is_one_detection() -> None:
    """A drone at +10 m/s on a ±10.1 m/s profile: some of its points' Doppler wraps to -10.0.
    Told the span, the clusterer links them across the edge and averages them there (±10.05,
    not 0); not told, it cuts the drone in two."""
    pts = blob((0.0, 40.0, 2.0), 10.0, 8, 0.25, 3)
    true = np.tile([9.9, 10.2], 4)  # half the points past the edge: read as -10.0
    pts[:, 3] = (true + 10.1) % 20.2 - 10.1
    (det,) = detect(pts, np.full(8, 20.0), doppler_span_mps=10.1)
    assert det.n_points == 8
    assert det.radial_mps is not None and abs(det.radial_mps) == pytest.approx(10.05, abs=0.06)
    assert len(detect(pts, np.full(8, 20.0))) == 2
