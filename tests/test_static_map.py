"""The learned static clutter map: learns a wall, drops it (even with a little Doppler), lets a mover
through the same cells, and survives a save/load round trip as calibration data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cuas_node.drivers.radar.cluster import ClusterOptions, PointClusterer
from cuas_node.drivers.radar.static_map import StaticClutterMap, StaticMapGrid


def wall(rng: np.random.Generator, doppler_sigma: float = 0.03) -> np.ndarray:
    """A wall 30 m ahead, 10 m wide: 25 points with position jitter and near-zero Doppler."""
    x = np.linspace(-5.0, 5.0, 25) + rng.normal(0, 0.05, 25)
    y = 30.0 + rng.normal(0, 0.08, 25)
    z = rng.normal(1.0, 0.2, 25)
    return np.column_stack([x, y, z, rng.normal(0, doppler_sigma, 25)]).astype(np.float32)


def mover(x: float, doppler: float) -> np.ndarray:
    """A drone crossing the wall's cells at 30 m (two points)."""
    return np.array([[x, 30.0, 1.0, doppler], [x + 0.2, 30.1, 1.1, doppler]], dtype=np.float32)


def learned_map(frames: int = 60, seed: int = 0, **kwargs: float) -> StaticClutterMap:
    rng = np.random.default_rng(seed)
    m = StaticClutterMap(learn_frames=frames, **kwargs)  # type: ignore[arg-type]
    for k in range(frames):
        # A drone crosses the wall's cells and a person walks slowly across at 20 m during learning:
        # neither may be learned (one is fast, the other stays in each cell for a few frames only).
        walker = np.array([[-5.0 + 10.0 * k / frames, 20.0, 1.0, 0.2]], dtype=np.float32)
        pts = np.vstack([wall(rng), mover(-5.0 + 10.0 * k / frames, 6.0), walker])
        assert m.keep(pts, None).all()  # learning: everything passes
    assert m.learned
    return m


def test_wall_is_learned_and_suppressed_even_with_some_doppler() -> None:
    m = learned_map()
    rng = np.random.default_rng(7)
    for _ in range(20):
        assert not m.keep(wall(rng, doppler_sigma=0.15), None).any()  # swaying clutter beyond the 0.1 band


@pytest.mark.parametrize("x", [-4.0, 0.0, 3.3])
@pytest.mark.parametrize("doppler", [-8.0, -2.0, 3.0, 12.0])
def test_mover_through_the_wall_cells_at_speed_passes(x: float, doppler: float) -> None:
    m = learned_map()
    assert m.keep(mover(x, doppler), None).all()


def test_slow_point_outside_the_learned_cells_passes() -> None:
    """A hovering drone away from learned clutter is kept by the map (the band decides about it)."""
    m = learned_map()
    hover = np.array([[10.0, 50.0, 5.0, 0.0], [-20.0, 15.0, 3.0, 0.02]], dtype=np.float32)
    assert m.keep(hover, None).all()


def test_a_mover_during_learning_leaves_no_trail() -> None:
    m = learned_map()
    rng = np.random.default_rng(3)
    # The wall spans about 19 degrees at 30 m: its cells plus a 1-cell border, a few range bins deep.
    assert 0 < m.static_cells <= 3 * 12 * 4
    assert not m.keep(np.array([[0.0, 30.0, 1.0, 0.0]], dtype=np.float32), None)[0]  # the wall
    path = np.array([[x, 20.0, 1.0, 0.0] for x in np.linspace(-5, 5, 21)], dtype=np.float32)
    assert m.keep(path, None).all()  # the walker's path is not clutter
    assert not m.keep(wall(rng), None).any()


def test_occasional_points_are_not_learned() -> None:
    m = StaticClutterMap(learn_frames=50, min_occupancy=0.3)
    blip = np.array([[0.0, 40.0, 0.0, 0.0]], dtype=np.float32)
    for k in range(50):
        m.observe(blip if k % 5 == 0 else np.zeros((0, 4), dtype=np.float32))  # 20 % of frames
    assert m.learned and m.static_cells == 0


def test_clusterer_with_map_reports_the_drone_and_not_the_wall() -> None:
    m = learned_map()
    clusterer = PointClusterer.from_options(ClusterOptions(doppler_clutter_band_mps=0.1), m)
    rng = np.random.default_rng(11)
    pts = np.vstack([wall(rng, doppler_sigma=0.2), mover(1.0, 7.5)])
    clusters = clusterer.cluster(pts)
    assert len(clusters) == 1
    assert clusters[0].doppler_mps == pytest.approx(7.5)
    # Without the map, the wall's points that leak out of the 0.1 m/s band become clusters.
    plain = PointClusterer.from_options(ClusterOptions(doppler_clutter_band_mps=0.1))
    assert len(plain.cluster(pts)) > 1


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    m = learned_map()
    path = tmp_path / "radar-n.static.npz"
    m.save(path)
    assert path.stat().st_size < 20_000
    loaded = StaticClutterMap.load(path)
    assert loaded.learned and loaded.grid == m.grid
    assert np.array_equal(loaded.static, m.static) and np.array_equal(loaded.hits, m.hits)
    rng = np.random.default_rng(5)
    probe = np.vstack([wall(rng, 0.2), mover(0.0, 5.0), rng.uniform(-40, 40, (50, 4)).astype(np.float32)])
    assert np.array_equal(loaded.keep(probe, None), m.keep(probe, None))


def test_load_rejects_a_damaged_or_foreign_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a map")
    with pytest.raises(ValueError, match=r"static clutter map .*bad\.npz"):
        StaticClutterMap.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, format_version=np.int32(99))
    with pytest.raises(ValueError, match="format version 99"):
        StaticClutterMap.load(other)


def test_points_off_the_grid_are_kept() -> None:
    m = StaticClutterMap(StaticMapGrid(max_range_m=20.0), learn_frames=1)
    far = np.array([[0.0, 50.0, 0.0, 0.0], [0.0, -5.0, 0.0, 0.0]], dtype=np.float32)  # beyond / behind
    m.observe(far)
    assert m.static_cells == 0 and m.keep(far, None).all()
