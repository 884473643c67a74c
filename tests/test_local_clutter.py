"""Where clutter is dense now (node/fusion/local_clutter.py): plots beyond one object's worth in
a place, scan after scan, raise λ there. What must hold: a spot of several plots a scan is priced
near its own density and nowhere far from it; uniform clutter, however dense, a lone drone and
one object's split return add nothing; and through the whole node (`track`) tree-like spots stop
raising confirmed tracks within seconds while a drone beside them still confirms (without the
map, the same spots raise them all run long)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from cuas_node.cli import main
from cuas_node.fusion.local_clutter import NEGLIGIBLE, LocalClutter, SiteLocalClutter, plots_per_scan
from cuas_node.fusion.measurement_models import radar_model
from cuas_node.fusion.params import RadarSensor
from cuas_node.fusion.sensor_stats import SensorStats
from cuas_node.kernel.pose import Pose
from tests.reflector_site import (
    COVERAGE,
    RATE_HZ,
    SIGMA,
    T0,
    TOML,
    enu,
    first_confirmed,
    measurement_lines,
    site_scans,
    write,
)

VOLUME = (COVERAGE[1] - COVERAGE[0]) * 4.0 * COVERAGE[2] * COVERAGE[3]
UNIFORM = 5.0 / VOLUME  # the site's λ: 5 false alarms a scan
SPOT = np.array([1200.0, 0.2, 0.02])  # range, az, el
SPREAD = np.array([3.0, 0.5, 0.5]) * SIGMA  # a tree: deep in range, narrower than a beam


def _spot_plots(rng: np.random.Generator, rate: float, where: np.ndarray = SPOT) -> np.ndarray:
    n = int(rng.poisson(rate))
    return np.asarray(where + rng.normal(0.0, 1.0, (n, 3)) * np.hypot(SPREAD, SIGMA))


def _run(local: LocalClutter, scans: list[np.ndarray], t0: float = 0.0) -> None:
    for k, z in enumerate(scans):
        local.observe(t0 + k / RATE_HZ, z, np.ones(z.shape[0], dtype=bool), 1.0 / RATE_HZ)


def test_the_rate_behind_an_excess_inverts_it() -> None:
    rho = np.array([1e-3, 0.05, 0.33, 1.0, 3.0, 20.0])
    excess = rho - 1.0 + np.exp(-rho)
    assert np.allclose(plots_per_scan(excess), rho, rtol=1e-6)
    assert plots_per_scan(np.zeros(1))[0] == 0.0


@pytest.mark.parametrize("rate", [1.0, 3.0])
def test_a_spot_of_several_plots_a_scan_is_priced_near_its_density_and_not_far_from_it(rate: float) -> None:
    rng = np.random.default_rng(1)
    local = LocalClutter(SIGMA.copy(), splits_objects=False)
    _run(local, [_spot_plots(rng, rate) for _ in range(round(30 * RATE_HZ))])
    t = 30.0
    spread = np.hypot(SPREAD, SIGMA)
    true_peak = rate / math.sqrt(float(np.prod(2.0 * math.pi * spread**2)))
    got = local.density(t, SPOT[None], UNIFORM)
    assert got is not None
    assert 0.3 * true_peak < got[0] < 3.0 * true_peak, (got[0], true_peak)
    assert got[0] > 1000.0 * UNIFORM  # the spot is far denser than the radar's uniform clutter
    assert local.spots(t) == 1  # one place, however many cells it spreads over (health)
    far = SPOT + np.array([0.0, 12.0 * SIGMA[1], 0.0])  # 12 beams aside
    aside = local.density(t, far[None], UNIFORM)
    assert aside is None or aside[0] < NEGLIGIBLE * UNIFORM


def test_uniform_clutter_however_dense_adds_nothing_worth_reading_and_its_map_stays_small() -> None:
    rng = np.random.default_rng(2)
    local = LocalClutter(SIGMA.copy(), splits_objects=False)
    lo, hi, az, el = COVERAGE
    uniform = 50.0 / VOLUME

    def scan() -> np.ndarray:
        m = int(rng.poisson(50.0))
        return np.column_stack([rng.uniform(lo, hi, m), rng.uniform(-az, az, m), rng.uniform(-el, el, m)])

    _run(local, [scan() for _ in range(round(60 * RATE_HZ))])
    query = scan()
    got = local.density(60.0, query, uniform)
    assert got is None or np.max(got) < 0.05 * uniform
    assert local.spots(60.0) == 0
    # Stray pairs' cells are dropped once they fade (3-4 minutes): the map levels off.
    _run(local, [scan() for _ in range(round(240 * RATE_HZ))], t0=60.0)
    held = local.keys.size
    _run(local, [scan() for _ in range(round(300 * RATE_HZ))], t0=300.0)
    assert local.keys.size < 1.3 * held


@pytest.mark.parametrize("splits", [True, False])
def test_a_lone_drone_adds_nothing_and_a_split_return_only_where_a_radar_never_splits(splits: bool) -> None:
    """A drone's plot, one a scan, is no excess; a clusterer's two plots of one object within each
    other's noise are one (a plot extractor's two plots are two objects: excess)."""
    rng = np.random.default_rng(3)
    lone = LocalClutter(SIGMA.copy(), splits_objects=splits)
    _run(lone, [SPOT + rng.normal(0.0, 1.0, (1, 3)) * SIGMA for _ in range(200)])
    assert lone.keys.size == 0
    split = LocalClutter(SIGMA.copy(), splits_objects=splits)
    _run(split, [SPOT + rng.normal(0.0, 1.0, (2, 3)) * SIGMA for _ in range(200)])
    got = split.density(20.0, SPOT[None], UNIFORM)
    peak = 1.0 / math.sqrt(float(np.prod(2.0 * math.pi * SIGMA**2)))  # one plot a scan, at the noise
    if splits:  # (the few pairs split further apart than 3 sigma are counted: a trace)
        assert got is None or got[0] < 0.05 * peak
    else:
        assert got is not None and got[0] > 0.1 * peak


def test_only_plots_no_established_track_took_count() -> None:
    rng = np.random.default_rng(4)
    local = LocalClutter(SIGMA.copy(), splits_objects=False)
    for k in range(200):  # two drones side by side, both followed by established tracks
        z = (
            np.array([SPOT, SPOT + np.array([0.0, 2.0 * SIGMA[1], 0.0])])
            + rng.normal(0.0, 1.0, (2, 3)) * SIGMA
        )
        local.observe(k / RATE_HZ, z, np.zeros(2, dtype=bool), 1.0 / RATE_HZ)
    assert local.keys.size == 0


def test_a_map_is_made_per_radar_once_its_accuracy_is_known() -> None:
    model = radar_model(RadarSensor("r", Pose.from_angles(0, 0, 0, (0, 0, 0)), 2500.0), range_rate=False)
    stats = SensorStats(5.0, 0.9)
    site = SiteLocalClutter()
    z = np.array([SPOT, SPOT])
    assert site.density(0, model, 0.0, z, UNIFORM, stats) is None and not site.maps  # accuracy unknown
    stats.sigma_range[0], stats.sigma_angle[0] = SIGMA[0], SIGMA[1]
    site.observe(0, model, 0.0, z, np.ones(2, dtype=bool), stats)
    assert list(site.maps) == [0] and site.maps[0].dim == 3


# -- through the node ------------------------------------------------------------------------
TREES = [np.array([900.0, -0.3, 0.01]), np.array([1600.0, 0.25, 0.005]), np.array([2100.0, -0.05, 0.004])]


RATES = (3.0, 4.0, 5.0)  # each tree's plots a scan
HOVER = TREES[1] + np.array([0.0, 6.0 * SIGMA[1], 0.0])  # a drone 6 beams beside a tree
ARRIVE_S = 30.0


def _tracked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[float, list[float], str]:
    """The trees (and from `ARRIVE_S` the drone) through `track`, 60 s at 10 Hz: confirmed
    track-seconds on the trees after the first 10 s, and when tracks near the drone confirmed."""

    def trees_and_drone(k: int, rng: np.random.Generator) -> np.ndarray:
        parts = [_spot_plots(rng, rate, tree) for tree, rate in zip(TREES, RATES, strict=True)]
        if k >= ARRIVE_S * RATE_HZ and rng.random() < 0.8:
            parts.append((HOVER + rng.normal(0.0, 1.0, 3) * SIGMA)[None])
        return np.concatenate(parts)

    scans = site_scans(60.0, seed=7, reflectors=False, drones=trees_and_drone)
    (tmp_path / "site.toml").write_text(TOML)
    path = write(tmp_path / "site.jsonl", measurement_lines(scans))
    assert main(["track", "--config", str(tmp_path / "site.toml"), str(path)]) == 0
    out, err = capsys.readouterr()
    trees, drone = enu(np.array(TREES)), enu(HOVER[None])[0]
    on_trees, last_t = 0.0, math.nan
    for line in out.splitlines():
        doc = json.loads(line)
        if doc["type"] != "tracks":
            continue
        step, last_t = doc["t"] - last_t, doc["t"]
        if doc["t"] - T0 < 10.0 or not math.isfinite(step):
            continue
        near = [
            np.min(np.linalg.norm(trees - np.array(tr["enu_m"]), axis=1)) < 150.0
            for tr in doc["tracks"]
            if tr["status"] == "confirmed"
        ]
        on_trees += step * sum(near)
    first = first_confirmed(out)
    drone_tracks = [t - T0 for t, p in first.values() if np.linalg.norm(p - drone) < 60.0 and t - T0 > 29.0]
    return on_trees, drone_tracks, err


def test_through_the_node_tree_spots_raise_fewer_tracks_and_a_drone_beside_one_confirms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three tree-like spots of 3-5 plots a scan over the site's uniform clutter: with the map,
    the confirmed track-seconds on them fall by at least 40 % against the same run without it
    (the control), and a drone that comes to hover six beams from a tree confirms within a second."""
    mapped, drone_tracks, told = _tracked(tmp_path, capsys)
    with monkeypatch.context() as patch:
        patch.setattr(SiteLocalClutter, "density", lambda *args, **kwargs: None)
        control, _, _ = _tracked(tmp_path, capsys)
    print(f"confirmed track-seconds on the trees after 10 s: {mapped:.0f} (without the map {control:.0f})")
    assert mapped <= 0.6 * control
    assert drone_tracks and min(drone_tracks) - ARRIVE_S < 1.0
    spots = re.search(r"radar 'surv': (\d+) places gave several plots a scan", told)
    assert spots is not None and 2 <= int(spots.group(1)) <= 6  # the summary says (of three trees)
