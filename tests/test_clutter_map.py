"""The tracker's clutter maps (fusion/clutter.py): where deaths of unconfirmed tracks recur.

Its counts decay with a half-life without the grid being touched every scan (a time scale is
kept aside and folded in now and then): these tests pin that the lazy decay reads the same as an
explicit one, across the fold. A cell is hot only above its range ring's background, in each
radar's own frame: dense uniform clutter heats nothing, a reflector in it still does."""

from __future__ import annotations

import math

import numpy as np

from cuas_node.fusion.clutter import ClutterMap, SiteClutter
from cuas_node.fusion.measurement_models import radar_model
from cuas_node.fusion.params import RadarSensor
from cuas_node.fusion.sensor_stats import SensorStats
from cuas_node.kernel.pose import Pose

POINT = np.array([[300.0, 400.0, 50.0]])  # 500 m out, north-east


def test_a_place_turns_hot_after_hot_count_deaths_and_cools_with_its_half_life() -> None:
    m = ClutterMap(max_range_m=2000.0, half_life_s=10.0, hot_count=2.5)
    for k in range(3):
        assert not m.hot(POINT, 100.0 + k)[0]
        m.add(POINT, 100.0 + k)
    assert m.hot(POINT, 102.0)[0]
    # Three deaths at 100, 101, 102 (2.8 decayed at 102); each decays with the half-life.
    assert math.isclose(m.count(POINT, 112.0)[0], sum(2 ** (-(112.0 - t) / 10.0) for t in (100, 101, 102)))
    assert not m.hot(POINT, 112.0)[0]  # one half-life later: about 1.4 < 2.5


def test_neighbouring_cells_count_but_other_places_do_not() -> None:
    m = ClutterMap(max_range_m=2000.0, cell_rad=math.radians(3.0), hot_count=2.5)
    rho, az = 500.0, math.atan2(300.0, 400.0)
    beside = np.array([[rho * math.sin(az + math.radians(3.0)), rho * math.cos(az + math.radians(3.0)), 0.0]])
    far = np.array([[-400.0, -300.0, 0.0]])
    for t in (1.0, 2.0):
        m.add(POINT, t)
    m.add(beside, 3.0)
    assert m.hot(POINT, 3.0)[0] and m.hot(beside, 3.0)[0]
    assert not m.hot(far, 3.0)[0]


def test_the_lazy_decay_reads_the_same_across_a_rescale() -> None:
    half_life = 2.0
    m = ClutterMap(max_range_m=2000.0, half_life_s=half_life)
    times = np.arange(0.0, 400.0, 7.3)  # the scale is folded in several times over this span
    for t in times:
        m.add(POINT, float(t))
        expected = sum(2 ** (-(t - s) / half_life) for s in times[times <= t])
        assert math.isclose(m.count(POINT, float(t))[0], expected, rel_tol=1e-9)
    assert m.t_ref > 0.0  # it did fold


def test_points_outside_the_map_are_never_hot() -> None:
    m = ClutterMap(max_range_m=1000.0, hot_count=1.0)
    outside = np.array([[0.0, 1500.0, 0.0]])
    m.add(outside, 0.0)
    assert not m.hot(outside, 0.0)[0]
    assert m.count(outside, 0.0)[0] == 0.0


def _site(
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0),
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    fov_az_deg: float = 60.0,
) -> SiteClutter:
    """A site with one TI-like radar (200 m, ±60° × ±30°, 1° and 0.15 m) at bit 0."""
    pose = Pose.from_angles(yaw_deg, pitch_deg, 0.0, offset_m)
    sensor = RadarSensor("radar", pose, 200.0, math.radians(fov_az_deg), math.radians(30.0), min_range_m=5.0)
    stats = SensorStats(50.0, 0.9)
    stats.sigma_angle[0], stats.sigma_range[0] = math.radians(1.0), 0.15
    site = SiteClutter()
    site.fit(0, radar_model(sensor), stats)
    return site


def _uniform(rng: np.random.Generator, n: int, centre_deg: float, r_min: float = 5.0) -> np.ndarray:
    """n points uniform in range and azimuth over a 200 m, ±60° coverage facing `centre_deg`."""
    r = rng.uniform(r_min, 200.0, n)
    az = np.radians(centre_deg) + rng.uniform(-math.pi / 3, math.pi / 3, n)
    return np.stack([r * np.sin(az), r * np.cos(az), np.full(n, 2.0)], axis=1)


FED_BY_0 = np.uint64(1)


def _away(births: np.ndarray, reflectors: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """The births no reflector shares a 3×3 neighbourhood with (two 3° cells apart, with margin)."""
    r = np.hypot(*(births[:, :2] - origin[:2]).T)
    d = np.linalg.norm(births[:, None, :2] - reflectors[None, :, :2], axis=2).min(axis=1)
    out: np.ndarray = births[d > 3.0 * np.maximum(r * math.radians(3.0), 0.45)]
    return out


def _die(site: SiteClutter, enu: np.ndarray, t: float) -> None:
    site.add(enu, np.full(enu.shape[0], FED_BY_0), t)


def test_dense_uniform_clutter_heats_no_cell_while_a_reflector_in_it_still_does() -> None:
    """50 false alarms a scan at 20 Hz over a 200 m, ±60° radar's coverage, every one a tentative
    track that dies, for 10 s: counted alone, every cell turned hot within seconds and every
    target born there waited two more hits (the tracker benchmark's `--churn` sets). The score
    prices uniform clutter; a reflector dying there every scan on top of it stands out of its
    range ring, and so does one a tenth as busy after a minute."""
    site, rng = _site(), np.random.default_rng(1)
    reflector = np.array([[40.0, 120.0, 2.0]])
    slow = np.array([[-60.0, 60.0, 2.0]])  # 85 m out, 45° left: one death every 0.5 s
    for k in range(1200):
        t = 100.0 + 0.05 * k
        _die(site, _uniform(rng, 50, 0.0), t)
        _die(site, reflector, t)
        if k % 10 == 0:
            _die(site, slow, t)
    births = _away(_uniform(rng, 500, 0.0, r_min=20.0), np.vstack([reflector, slow]), np.zeros(3))
    own = site.maps[0].count(births, 160.0)
    assert np.mean(own >= site.maps[0].hot_count) > 0.9  # a single cell: the old test said hot
    assert site.hot(births, 160.0).mean() < 0.01
    assert site.hot(reflector, 160.0)[0]
    assert site.hot(slow, 160.0)[0]


def test_a_few_reflectors_in_light_clutter_are_hot_and_the_rest_is_not() -> None:
    """`birds-and-clutter`'s kind of site: 30 fixed reflectors over the coverage, each a death every
    second or so, and 4 false alarms a scan at 10 Hz: every reflector is hot (the other
    reflectors sharing its ring do not hide it), almost nothing else is."""
    site, rng = _site(), np.random.default_rng(2)
    reflectors = _uniform(rng, 30, 0.0, r_min=10.0)
    for k in range(600):
        t = 0.1 * k
        _die(site, _uniform(rng, 4, 0.0), t)
        if k % 10 == 0:
            _die(site, reflectors + rng.normal(0.0, 0.3, reflectors.shape), t)
    assert site.hot(reflectors, 60.0).all()
    elsewhere = _away(_uniform(rng, 1000, 0.0, r_min=20.0), reflectors, np.zeros(3))
    assert elsewhere.shape[0] > 200
    assert site.hot(elsewhere, 60.0).mean() < 0.02


def test_a_radar_mounted_away_from_the_node_judges_cells_on_its_own_rings() -> None:
    """A radar 400 m east of the node facing east: its uniform clutter is uniform on its own range
    rings, which the node's rings cut across; no cell is hot, a reflector is, and a death counts
    only in the maps of the radars that fed the track."""
    site, rng = _site(offset_m=(400.0, 0.0, 0.0), yaw_deg=90.0), np.random.default_rng(3)
    here = np.array([400.0, 0.0, 0.0])
    reflector = here + np.array([[120.0, 30.0, 2.0]])
    for k in range(1200):
        t = 0.05 * k
        _die(site, here + _uniform(rng, 50, 90.0), t)
        _die(site, reflector, t)
    assert site.hot(_away(here + _uniform(rng, 500, 90.0, r_min=20.0), reflector, here), 60.0).mean() < 0.01
    assert site.hot(reflector, 60.0)[0]
    other = here + np.array([[-60.0, 80.0, 2.0]])
    site.add(np.repeat(other, 20, axis=0), np.full(20, np.uint64(2)), 60.0)  # fed by another sensor only
    assert not site.hot(other, 60.0)[0]


def _sensor_uniform(rng: np.random.Generator, n: int, site_pose: Pose, fov_az_deg: float) -> np.ndarray:
    """n false alarms uniform in range, azimuth and elevation of the radar's own view, in ENU."""
    r = rng.uniform(5.0, 200.0, n)
    az = np.radians(rng.uniform(-fov_az_deg, fov_az_deg, n))
    el = np.radians(rng.uniform(-30.0, 30.0, n))
    xyz = np.stack([r * np.cos(el) * np.sin(az), r * np.cos(el) * np.cos(az), r * np.sin(el)], axis=1)
    out: np.ndarray = site_pose.sensor_to_enu(xyz)
    return out


def test_a_pitched_radar_and_a_view_off_the_column_borders_heat_nothing_in_uniform_clutter() -> None:
    """Uniform clutter over a radar's own view, pitched up 20° (its view's upper edge spreads
    wider in ENU azimuth than its level one) or ±50° wide (edge columns partly in view): the
    columns weigh what reaches them, so no cell stands out of its ring."""
    for pitch, fov in ((20.0, 60.0), (0.0, 50.0)):
        site, rng = _site(pitch_deg=pitch, fov_az_deg=fov), np.random.default_rng(7)
        pose = Pose.from_angles(0.0, pitch, 0.0, (0.0, 0.0, 0.0))
        for k in range(600):
            _die(site, _sensor_uniform(rng, 50, pose, fov), 0.05 * k)
        births = _sensor_uniform(rng, 1000, pose, fov)
        births = births[np.hypot(births[:, 0], births[:, 1]) > 20.0]
        assert site.hot(births, 30.0).mean() < 0.02, (pitch, fov)


def test_a_reflector_stays_hot_across_the_grid_rescale() -> None:
    """The ring's sums are rescaled with the grid when the lazy decay folds (every ~70 minutes at
    the 120 s half-life): a reflector dying every second keeps standing out of its ring."""
    site, rng = _site(), np.random.default_rng(8)
    m = site.maps[0]
    reflector = np.array([[40.0, 120.0, 2.0]])
    for k in range(6000):
        _die(site, np.vstack([_uniform(rng, 5, 0.0), reflector]), float(k))
    assert m.t_ref > 0.0  # it did fold
    assert site.hot(reflector, 6000.0)[0]
    assert site.hot(_away(_uniform(rng, 500, 0.0, r_min=20.0), reflector, np.zeros(3)), 6000.0).mean() < 0.02


def test_deaths_outside_a_radars_view_make_no_cell_hot_in_its_map() -> None:
    """A track two radars fed may die in the other's view: it counts in both maps, but only the
    map of the radar that sees the place may call it hot."""
    site = _site()
    behind = np.array([[0.0, -100.0, 2.0]])  # behind the radar facing north
    _die(site, np.repeat(behind, 20, axis=0), 1.0)
    assert not site.hot(behind, 1.0)[0]


def test_persistent_false_objects_ask_their_own_place_to_outlive_them_and_fade() -> None:
    """Established tracks lost where they were born (`add` with their lives): where `hot_count` of them were
    lost around a place, a track born there must live 2.3 times their mean life (outliving 90 %
    of lives spread as an exponential's); elsewhere, and once they have faded, nothing is asked.
    Lives at one place (drones that hovered and were lost) never set the wait at another."""
    m = ClutterMap(max_range_m=2000.0, half_life_s=10.0, hot_count=2.5)
    far = np.array([[-900.0, 1200.0, 30.0]])
    m.add(np.repeat(POINT, 2, axis=0), 100.0, np.array([1.0, 2.0]))
    assert m.outlive_s(POINT, 100.0)[0] == 0.0  # two lives: not known yet
    m.add(POINT, 100.0, np.array([3.0]))
    assert math.isclose(m.outlive_s(POINT, 100.0)[0], -math.log(0.1) * 2.0)
    m.add(np.repeat(far, 3, axis=0), 100.0, np.full(3, 90.0))  # hovering drones lost elsewhere
    assert math.isclose(m.outlive_s(POINT, 100.0)[0], -math.log(0.1) * 2.0)
    assert m.outlive_s(POINT, 110.0)[0] == 0.0  # a half-life later: 1.5 lives
