"""The tracker's clutter map (fusion/clutter.py): where deaths of unconfirmed tracks recur.

Its counts decay with a half-life without the grid being touched every scan (a time scale is
kept aside and folded in now and then): these tests pin that the lazy decay reads the same as an
explicit one, across the fold."""

from __future__ import annotations

import math

import numpy as np

from cuas_node.fusion.clutter import ClutterMap

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
