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
import tomllib
from pathlib import Path

import numpy as np
import pytest

from cuas_node.assembly import core_setup
from cuas_node.cli import main
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.fusion.local_clutter import NEGLIGIBLE, LocalClutter, SiteLocalClutter, plots_per_scan
from cuas_node.fusion.measurement_models import radar_model
from cuas_node.fusion.params import RadarSensor
from cuas_node.fusion.sensor_stats import SensorStats
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.kernel.pose import Pose
from tests.reflector_site import (
    COVERAGE,
    RATE_HZ,
    SIGMA,
    T0,
    TOML,
    enu,
    first_confirmed,
    learn,
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
    tiny = plots_per_scan(np.array([1e-300, 1e-40, 1e-12]))  # (W's branch point rounds to NaN there)
    assert np.all(np.isfinite(tiny)) and np.allclose(tiny, np.sqrt(2.0 * np.array([1e-300, 1e-40, 1e-12])))


@pytest.mark.parametrize("rate", [1.0, 3.0])
def test_a_spot_of_several_plots_a_scan_is_priced_near_its_density_and_not_far_from_it(rate: float) -> None:
    rng = np.random.default_rng(1)
    local = LocalClutter(SIGMA.copy(), splits_objects=False, coverage_volume=VOLUME)
    _run(local, [_spot_plots(rng, rate) for _ in range(round(30 * RATE_HZ))])
    t = 30.0
    spread = np.hypot(SPREAD, SIGMA)
    true_peak = rate / math.sqrt(float(np.prod(2.0 * math.pi * spread**2)))
    got = local.density(t, SPOT[None], UNIFORM, 5.0)
    assert got is not None
    assert 0.3 * true_peak < got[0] < 3.0 * true_peak, (got[0], true_peak)
    assert got[0] > 1000.0 * UNIFORM  # the spot is far denser than the radar's uniform clutter
    assert local.spots(t, 5.0) == 1  # one place, however many cells it spreads over (health)
    far = SPOT + np.array([0.0, 12.0 * SIGMA[1], 0.0])  # 12 beams aside
    aside = local.density(t, far[None], UNIFORM, 5.0)
    assert aside is None or aside[0] < NEGLIGIBLE * UNIFORM


@pytest.mark.parametrize("per_scan", [50.0, 200.0])
def test_uniform_clutter_prices_itself_once_and_its_map_stays_small(per_scan: float) -> None:
    """Dense uniform clutter makes chance pairs in every neighbourhood; what they say is the
    radar's own uniform rate, which λ already holds: the map adds next to nothing to it."""
    rng = np.random.default_rng(2)
    local = LocalClutter(SIGMA.copy(), splits_objects=False, coverage_volume=VOLUME)
    lo, hi, az, el = COVERAGE
    uniform = per_scan / VOLUME

    def scan() -> np.ndarray:
        m = int(rng.poisson(per_scan))
        return np.column_stack([rng.uniform(lo, hi, m), rng.uniform(-az, az, m), rng.uniform(-el, el, m)])

    _run(local, [scan() for _ in range(round(60 * RATE_HZ))])
    query = np.concatenate([scan() for _ in range(20)])
    got = local.density(60.0, query, uniform, per_scan)
    assert got is None or np.max(got) < 0.1 * uniform
    assert local.spots(60.0, per_scan) == 0
    # Stray pairs' cells are dropped once they fade (3-4 minutes): the map levels off.
    _run(local, [scan() for _ in range(round(240 * RATE_HZ))], t0=60.0)
    held = local.keys.size
    _run(local, [scan() for _ in range(round(300 * RATE_HZ))], t0=300.0)
    assert local.keys.size < 1.3 * held


def test_chance_pairs_of_dense_uniform_clutter_at_one_scan_a_second_are_no_places() -> None:
    """An outside user's plot extractor at 1 Hz (5 m, 1° × 1.5°, 50-4000 m, 43 uniform false
    alarms a scan) for five minutes: its chance pairs once read as 9-10 places in health and the
    `track` summary (it sent users looking for trees); places are counted at the low quantile
    the map prices at, so none are."""
    sigma = np.array([5.0, math.radians(1.0), math.radians(1.5)])
    lo, hi, az, el = 50.0, 4000.0, math.radians(60.0), math.radians(20.0)
    local = LocalClutter(sigma, splits_objects=False, coverage_volume=(hi - lo) * 4.0 * az * el)
    rng = np.random.default_rng(1)
    for k in range(300):
        m = int(rng.poisson(43.0))
        z = np.column_stack([rng.uniform(lo, hi, m), rng.uniform(-az, az, m), rng.uniform(-el, el, m)])
        local.observe(float(k), z, np.ones(m, dtype=bool), 1.0)
    assert local.spots(299.0, 43.0) == 0


@pytest.mark.parametrize("splits", [True, False])
def test_a_lone_drone_adds_nothing_and_a_split_return_only_where_a_radar_never_splits(splits: bool) -> None:
    """A drone's plot, one a scan, is no excess; a clusterer's two plots of one object within each
    other's noise are one (a plot extractor's two plots are two objects: excess)."""
    rng = np.random.default_rng(3)
    lone = LocalClutter(SIGMA.copy(), splits_objects=splits, coverage_volume=VOLUME)
    _run(lone, [SPOT + rng.normal(0.0, 1.0, (1, 3)) * SIGMA for _ in range(200)])
    assert lone.keys.size == 0
    split = LocalClutter(SIGMA.copy(), splits_objects=splits, coverage_volume=VOLUME)
    _run(split, [SPOT + rng.normal(0.0, 1.0, (2, 3)) * SIGMA for _ in range(200)])
    got = split.density(20.0, SPOT[None], UNIFORM, 5.0)
    peak = 1.0 / math.sqrt(float(np.prod(2.0 * math.pi * SIGMA**2)))  # one plot a scan, at the noise
    if splits:  # (the few pairs split further apart than 3 sigma are counted: a trace)
        assert got is None or got[0] < 0.05 * peak
    else:
        assert got is not None and got[0] > 0.1 * peak


def _core() -> NodeCore:
    return NodeCore(core_setup(build_config(tomllib.loads(TOML), "test")))


def _detections(z: np.ndarray, t: float, radial: float | None = None) -> list[RadarDetection]:
    s, rate_sigma = SIGMA, None if radial is None else 0.2
    return [
        RadarDetection("surv", t, t, r, a, e, radial, s[0], s[1], s[2], rate_sigma, 15.0)
        for r, a, e in z.tolist()
    ]


def test_two_drones_side_by_side_followed_by_tracks_add_nothing_through_the_tracker() -> None:
    """Two hovering drones two beams apart, no clutter: once their tracks are established, their
    plots are theirs, and the map stays empty (it would fill if every plot counted)."""
    rng = np.random.default_rng(4)
    core = _core()
    pair = np.array([SPOT, SPOT + np.array([0.0, 2.0 * SIGMA[1], 0.0])])
    for k in range(round(60 * RATE_HZ)):
        t = T0 + k / RATE_HZ
        core.step(t, _detections(pair + rng.normal(0.0, 1.0, (2, 3)) * SIGMA, t))
    tracker = core.engine.tracker
    assert np.count_nonzero(tracker.table.status == Status.CONFIRMED) == 2
    local = tracker.local_clutter.maps[(0, 3)]
    assert local.count.sum() / local._scale(t) < 30.0  # the first scans, before the tracks were established
    assert tracker.local_clutter.spots(t, tracker.stats) == 0


def test_a_spot_astern_of_an_all_round_radar_is_one_spot_priced_as_one_ahead() -> None:
    """Azimuth cells tile the circle: a spot straddling ±π (at beam widths where 2π over the
    cell width rounds just above a whole number, a sliver cell once split it) is priced as the
    same spot straight ahead, and counted once."""
    sigmas = np.array([2.0, math.radians(1.2), math.radians(1.2)])
    got = []
    for az in (0.0, math.pi):
        rng = np.random.default_rng(8)
        local = LocalClutter(sigmas, splits_objects=False, coverage_volume=VOLUME)
        where = np.array([1200.0, az, 0.02])
        scans = []
        for _ in range(round(30 * RATE_HZ)):
            z = where + rng.normal(0.0, 1.0, (int(rng.poisson(3.0)), 3)) * sigmas
            z[:, 1] = (z[:, 1] + math.pi) % (2.0 * math.pi) - math.pi
            scans.append(z)
        _run(local, scans)
        assert local.spots(30.0, 5.0) == 1
        density = local.density(30.0, where[None], UNIFORM, 5.0)
        assert density is not None
        got.append(float(density[0]))
    assert got[1] == pytest.approx(got[0], rel=0.25)


def test_a_late_frame_adds_no_time() -> None:
    local = LocalClutter(SIGMA.copy(), splits_objects=False, coverage_volume=VOLUME)
    none = np.zeros((0, 3))
    for t in (0.0, 0.1, 0.2):
        local.observe(t, none, np.zeros(0, dtype=bool), 0.1)
    before = local.scans / local._scale(0.2)
    local.observe(0.15, none, np.zeros(0, dtype=bool), 0.1)
    local.observe(0.15, none, np.zeros(0, dtype=bool), math.nan)  # (period unknown)
    assert local.scans / local._scale(0.2) == pytest.approx(before)


def test_a_surveyed_spot_is_priced_by_the_survey_not_twice(tmp_path: Path) -> None:
    """A spot of three plots a scan that the installation survey learnt (`reflectors_file`): its
    plots are the survey's, so the local map leaves them alone (counted, they were priced twice)."""
    rng = np.random.default_rng(9)
    survey_scans = [_spot_plots(rng, 3.0) for _ in range(round(60 * RATE_HZ))]
    survey = learn(survey_scans).reflectors
    survey.sensor_id = "surv"
    (tmp_path / "map.json").write_text(json.dumps(survey.to_dict()))
    toml = TOML + f'reflectors_file = "{tmp_path / "map.json"}"\n'
    for surveyed in (True, False):
        core = NodeCore(core_setup(build_config(tomllib.loads(toml if surveyed else TOML), "test")))
        for k in range(round(30 * RATE_HZ)):
            t = T0 + k / RATE_HZ
            core.step(t, _detections(_spot_plots(rng, 3.0), t))
        maps = core.engine.tracker.local_clutter.maps
        held = sum(float(m.count.sum() / m._scale(t)) for m in maps.values())
        assert (held < 10.0) == surveyed, held


def test_a_spot_that_stops_fades_within_minutes() -> None:
    rng = np.random.default_rng(5)
    local = LocalClutter(SIGMA.copy(), splits_objects=False, coverage_volume=VOLUME)
    _run(local, [_spot_plots(rng, 3.0) for _ in range(round(60 * RATE_HZ))])
    assert local.spots(60.0, 5.0) == 1
    _run(local, [np.zeros((0, 3)) for _ in range(round(600 * RATE_HZ))], t0=60.0)
    assert local.spots(660.0, 5.0) == 0  # (three plots a scan for a minute: ten half-lives)
    _run(local, [np.zeros((0, 3)) for _ in range(round(600 * RATE_HZ))], t0=660.0)
    assert local.keys.size == 0


def test_two_young_drones_side_by_side_still_confirm_at_once() -> None:
    """Two drones appearing together four beams apart: for their first scans they are two plots
    in one neighbourhood, excess the map counts; both still confirm within a second (the map's
    prior over its first scans and the low quantile of so little evidence)."""
    pair = np.array([SPOT, SPOT + np.array([0.0, 4.0 * SIGMA[1], 0.0])])
    for seed in range(4):
        rng = np.random.default_rng(seed)
        core = _core()
        confirmed_at: list[float] = []
        for k in range(round(3 * RATE_HZ)):
            t = T0 + k / RATE_HZ
            seen = rng.random(2) < 0.9
            core.step(t, _detections(pair[seen] + rng.normal(0.0, 1.0, (int(seen.sum()), 3)) * SIGMA, t))
            if (
                not confirmed_at
                and np.count_nonzero(core.engine.tracker.table.status == Status.CONFIRMED) == 2
            ):
                confirmed_at.append(t - T0)
        assert confirmed_at and confirmed_at[0] < 1.0, seed


def test_a_range_rate_radars_frame_with_and_without_range_rate_keeps_two_maps() -> None:
    """A 4-row frame, then one whose plots lack range-rate (fused by the 3-D model): two maps of
    the one radar, no mix of their moments (that raised, shapes (2,4) and (2,3))."""
    toml = TOML.replace(
        "false_alarms_per_scan = 5",
        "false_alarms_per_scan = 5\nrange_rate = true\nrange_rate_sigma_mps = 0.2",
    )
    core = NodeCore(core_setup(build_config(tomllib.loads(toml), "test")))
    rng = np.random.default_rng(7)
    for k in range(round(10 * RATE_HZ)):
        t = T0 + k / RATE_HZ
        tree = _spot_plots(rng, 4.0)
        with_rate = _detections(tree[: len(tree) // 2], t, 0.0)
        core.step(t, with_rate + _detections(tree[len(tree) // 2 :], t))
    maps = core.engine.tracker.local_clutter.maps
    assert set(maps) == {(0, 3), (0, 4)} and maps[(0, 4)].dim == 4 and maps[(0, 3)].dim == 3


def test_a_map_is_made_per_radar_once_its_accuracy_is_known() -> None:
    model = radar_model(RadarSensor("r", Pose.from_angles(0, 0, 0, (0, 0, 0)), 2500.0), range_rate=False)
    stats = SensorStats(5.0, 0.9)
    site = SiteLocalClutter()
    z = np.array([SPOT, SPOT])
    assert site.density(0, model, 0.0, z, UNIFORM, stats) is None and not site.maps  # accuracy unknown
    stats.sigma_range[0], stats.sigma_angle[0] = SIGMA[0], SIGMA[1]
    site.observe(0, model, 0.0, z, np.ones(2, dtype=bool), stats)
    assert list(site.maps) == [(0, 3)] and site.maps[(0, 3)].dim == 3


# -- through the node ------------------------------------------------------------------------
TREES = [np.array([900.0, -0.3, 0.01]), np.array([1600.0, 0.25, 0.005]), np.array([2100.0, -0.05, 0.004])]


RATES = (3.0, 4.0, 5.0)  # each tree's plots a scan
HOVER = TREES[1] + np.array([0.0, 6.0 * SIGMA[1], 0.0])  # a drone 6 beams beside a tree
ARRIVE_S = 30.0


def _tracked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mapped: bool = True
) -> tuple[float, list[float], str]:
    """The trees (and from `ARRIVE_S` the drone) through `track`, 60 s at 10 Hz: confirmed
    track-seconds on the trees after the first 10 s, and when tracks near the drone confirmed."""

    def trees_and_drone(k: int, rng: np.random.Generator) -> np.ndarray:
        parts = [_spot_plots(rng, rate, tree) for tree, rate in zip(TREES, RATES, strict=True)]
        if k >= ARRIVE_S * RATE_HZ and rng.random() < 0.8:
            parts.append((HOVER + rng.normal(0.0, 1.0, 3) * SIGMA)[None])
        return np.concatenate(parts)

    scans = site_scans(60.0, seed=7, reflectors=False, drones=trees_and_drone)
    (tmp_path / "site.toml").write_text(TOML + ("" if mapped else "\n[fusion]\nlocal_clutter = false\n"))
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
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three tree-like spots of 3-5 plots a scan over the site's uniform clutter: with the map,
    the confirmed track-seconds on them fall by at least a third against the same run without it
    (the control, `fusion.local_clutter = false`: 312 against 516; 391 against 766 while the
    tracks on the trees taught the radar its Pd, `looks.moved`), and a drone that comes
    to hover six beams from a tree confirms within a second. The control's summary names no spot."""
    mapped, drone_tracks, told = _tracked(tmp_path, capsys)
    control, _, untold = _tracked(tmp_path, capsys, mapped=False)
    assert "places gave several plots" not in untold
    print(f"confirmed track-seconds on the trees after 10 s: {mapped:.0f} (without the map {control:.0f})")
    assert mapped <= 0.67 * control
    assert drone_tracks and min(drone_tracks) - ARRIVE_S < 1.0
    spots = re.search(r"radar 'surv': (\d+) places gave several plots a scan", told)
    assert spots is not None and 2 <= int(spots.group(1)) <= 6  # the summary says (of three trees)
