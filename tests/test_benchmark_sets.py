"""The tracker benchmark's own parts (benchmarks/tracking_sets.py, benchmarks/numpy_gnn.py): the
generator gives the stated Pd and clutter rate, and the numpy GNN-EKF floor tracks a lone target.
Stone Soup is needed only by the command-line test."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
tracking_sets = pytest.importorskip("tracking_sets")
numpy_gnn = pytest.importorskip("numpy_gnn")

Z = 4.0  # standard deviations: a correct generator fails one of these checks about 1 time in 8,000


@pytest.mark.parametrize("radar", ["TI_RADAR", "LONG_RANGE"])
def test_detections_have_the_stated_pd_and_clutter_rate(radar: str) -> None:
    spec = tracking_sets.SetSpec("t", getattr(tracking_sets, radar), 20, 8.0, pd=0.8, duration_s=5.0)
    scans = tracking_sets.make_scans(spec, seed=3)
    looks = sum(int(s.inside.sum()) for s in scans)  # binomial trials: targets in coverage
    hits = sum(s.n_true for s in scans)
    assert looks > 0.8 * spec.targets * len(scans)  # targets start inside and mostly stay
    assert abs(hits - spec.pd * looks) <= Z * math.sqrt(looks * spec.pd * (1 - spec.pd))
    false = sum(s.z.shape[0] - s.n_true for s in scans)  # Poisson(scans × clutter)
    mean = spec.clutter * len(scans)
    assert abs(false - mean) <= Z * math.sqrt(mean)
    z = np.concatenate([s.z for s in scans])
    radar_ = spec.radar
    assert z.shape[1] == radar_.dim
    assert np.all(z[:, 0] <= radar_.max_range_m + 5 * radar_.sigma[0])
    assert np.all(np.abs(z[:, 1]) <= radar_.fov_az_rad + 5 * radar_.sigma[1])


def test_the_numpy_floor_tracks_a_lone_target() -> None:
    for radar in (tracking_sets.TI_RADAR, tracking_sets.LONG_RANGE):
        spec = tracking_sets.SetSpec("lone", radar, 1, 0.0, pd=1.0, duration_s=3.0)
        gnn = numpy_gnn.NumpyGnn(numpy_gnn.GnnParams(radar.sigma))
        errors = []
        for scan in tracking_sets.make_scans(spec, seed=1):
            gnn.step(scan.t, scan.z)
            ids, pos = gnn.confirmed_tracks()
            if scan.t >= 0.5:
                assert ids.size == 1
                errors.append(float(np.linalg.norm(pos[0] - scan.truth[0])))
        # Filtered: well inside the raw cross-range error at that range.
        rng = float(np.linalg.norm(scan.truth[0]))
        raw = max(radar.sigma[0], rng * max(radar.sigma[1], radar.sigma[2]))
        assert np.mean(errors) < 2.0 * raw


@pytest.mark.parametrize("dim", [3, 4])
def test_the_floor_gates_by_the_mahalanobis_distance_of_every_pair(dim: int) -> None:
    """The floor's fast pair distances are νᵀ S⁻¹ ν pair by pair, the azimuth wrapped (predictions
    and detections on either side of ±π are neighbours)."""
    rng = np.random.default_rng(3)
    k, m = 7, 5
    z = rng.normal(size=(m, dim))
    z_pred = rng.normal(size=(k, dim))
    z[0, 1], z_pred[0, 1] = math.pi - 0.01, -math.pi + 0.02  # 0.03 rad apart across the wrap
    a = rng.normal(size=(k, dim, dim))
    s_inv = np.linalg.inv(a @ a.transpose(0, 2, 1) + np.eye(dim))
    nu, d2 = numpy_gnn.pair_distances(z, z_pred, s_inv)
    for i in range(k):
        for j in range(m):
            v = z[j] - z_pred[i]
            v[1] = (v[1] + math.pi) % (2 * math.pi) - math.pi
            assert np.allclose(nu[:, i, j], v)
            assert d2[i, j] == pytest.approx(float(v @ s_inv[i] @ v), rel=1e-12)
    assert nu[1, 0, 0] == pytest.approx(-0.03)


def test_quick_sets_are_named_and_short() -> None:
    assert all(s.duration_s <= 3.0 for s in tracking_sets.QUICK_SETS)
    assert all(s.duration_s >= 10.0 for s in tracking_sets.FULL_SETS)
    names = [s.name for s in tracking_sets.FULL_SETS]
    assert len(set(names)) == len(names)
    assert any(s.targets >= 100 for s in tracking_sets.QUICK_SETS)
    assert replace(tracking_sets.FULL_SETS[0], name="x").radar is tracking_sets.TI_RADAR


@pytest.mark.parametrize("q", [0.5, 8.0])
def test_wandering_truth_has_the_stated_random_acceleration(q: float) -> None:
    """`--wander Q`: the second differences of sampled positions of a white-acceleration motion
    have variance (2/3)·q·dt³ (0.09 q vertically); the straight-flight sets are unchanged."""
    spec = replace(tracking_sets.FULL_SETS[0], wander_q=q, targets=20)
    dt = 1.0 / spec.radar.rate_hz
    p = np.array([s.truth for s in tracking_sets.make_scans(spec, 1)])
    d2 = p[2:] - 2.0 * p[1:-1] + p[:-2]
    assert d2[..., :2].var() == pytest.approx(2.0 / 3.0 * q * dt**3, rel=0.1)
    assert d2[..., 2].var() == pytest.approx(2.0 / 3.0 * 0.09 * q * dt**3, rel=0.15)
    straight = np.array([s.truth for s in tracking_sets.make_scans(replace(spec, wander_q=0.0), 1)])
    assert np.abs(straight[2:] - 2.0 * straight[1:-1] + straight[:-2]).max() < 1e-9


@pytest.mark.parametrize("radar", ["TI_RADAR", "LONG_RANGE"])
def test_stress_crossers_meet_at_mid_run_turns_and_all(radar: str) -> None:
    """What the stress set claims: half its targets are at one point at mid-run, while every
    target turns (their turns once took most crossers 20-180 m past the point)."""
    spec = tracking_sets.SetSpec("s", getattr(tracking_sets, radar), 10, 0.0, stress=True, duration_s=16.0)
    truth = np.array([s.truth for s in tracking_sets.make_scans(spec, seed=2)])  # (steps, N, 3)
    mid = truth[len(truth) // 2]
    centre = tracking_sets._crossing_point(spec.radar)
    assert np.allclose(mid[:5, :2], centre, atol=1e-6)
    assert np.all(np.linalg.norm(mid[5:, :2] - centre, axis=1) > 1.0)
    heading = np.unwrap(np.arctan2(*np.moveaxis(np.diff(truth[:, :, :2], axis=0), -1, 0)), axis=0)
    assert np.all(np.ptp(heading, axis=0) > 0.3), "every target turns"


def test_churn_targets_are_born_and_die_mid_run_and_nothing_else_changes() -> None:
    """Under `churn` some targets come after the start and some vanish before the end, inside
    the coverage; a target not yet born or dead is neither scored nor detected; the clutter and
    every living target's detections are those of the same set without churn."""
    plain = tracking_sets.SetSpec("c", tracking_sets.LONG_RANGE, 20, 10.0, duration_s=12.0)
    churned = replace(plain, churn=True)
    a, b = tracking_sets.make_scans(plain, seed=4), tracking_sets.make_scans(churned, seed=4)
    inside_a = np.array([s.inside for s in a])
    inside_b = np.array([s.inside for s in b])
    assert not (inside_b & ~inside_a).any()
    lost = inside_a & ~inside_b  # in coverage but not yet born or already dead
    born_late = lost[0] & inside_b.any(axis=0)
    died = inside_b[len(b) // 2] & ~inside_b[-1] & inside_a[-1]
    assert born_late.sum() >= 3 and died.sum() >= 3
    sigma = np.asarray(plain.radar.sigma)
    for sa, sb, absent in zip(a, b, lost, strict=True):
        # b's detections are a's, in a's order, less those of the absent targets
        kept = np.array([row.tolist() in sb.z.tolist() for row in sa.z])
        assert np.array_equal(sa.z[kept], sb.z)
        assert sa.n_true - sb.n_true == (~kept).sum()
        if (~kept).any():
            z_absent = tracking_sets.measure_true(sa.truth[absent], sa.truth[absent] * 0, 3)
            d = np.abs(sa.z[~kept][:, None, :3] - z_absent[None]) / sigma[:3]
            assert (d.max(axis=2) < 6.0).any(axis=1).all(), "a dropped detection was not an absent target's"
    assert sum(s.n_true for s in b) < sum(s.n_true for s in a)


def test_the_benchmark_reruns_its_sets_at_another_pd_clutter_and_unseen_seeds() -> None:
    """`--pd`, `--clutter` and `--first-seed` make the benchmark's claims rerunnable on sets
    nothing was tuned on; the overrides reach the sets and show in their names."""
    pytest.importorskip("stonesoup")
    bench = pytest.importorskip("tracker_vs_stonesoup")
    _, sets, seeds = bench.parse(
        ["--sets", "lr-5x10,ti-20x50", "--pd", "0.7", "--clutter", "50", "--first-seed", "7", "--seeds", "3"]
    )
    assert [s.name for s in sets] == ["lr-5x10-pd0.7-c50", "ti-20x50-pd0.7-c50"]
    assert all(s.pd == 0.7 and s.clutter == 50.0 for s in sets)
    assert seeds == [7, 8, 9]
    scans = tracking_sets.make_scans(replace(sets[0], duration_s=2.0), seed=7)
    clutter = sum(s.z.shape[0] - s.n_true for s in scans)
    assert abs(clutter - 50.0 * len(scans)) <= Z * math.sqrt(50.0 * len(scans))
    for bad in (
        ["--pd", "0"],
        ["--pd", "1.5"],
        ["--clutter", "-1"],
        ["--first-seed", "-1"],
        ["--seeds", "0"],
        ["--rate", "0"],
        ["--fixtures-after", "-1"],
    ):
        with pytest.raises(SystemExit) as exited:
            bench.parse(bad)
        assert exited.value.code == 2
    # `--fixtures-after S`: ours learns fixtures after S s (its config); unset, the node's default.
    _, (fix,) = bench.parse(["--sets", "lr-5x10", "--fixtures-after", "300"])[:2]
    assert fix.name == "lr-5x10-fix300" and bench.node_config(fix).fusion.learn_fixtures_after_s == 300.0
    assert bench.node_config(sets[0]).fusion.learn_fixtures_after_s == 2700.0


def test_the_benchmark_reruns_its_sets_at_another_scan_rate() -> None:
    """`--rate`: a slow radar's sets (the tracker claims 1 to 50 Hz), long enough for 30 scans and
    judged after 4; the scans come at that rate."""
    pytest.importorskip("stonesoup")
    bench = pytest.importorskip("tracker_vs_stonesoup")
    _, sets, _ = bench.parse(["--sets", "lr-5x10,ti-5x10", "--rate", "1"])
    assert [s.name for s in sets] == ["lr-5x10-1hz", "ti-5x10-1hz"]
    assert all(s.radar.rate_hz == 1.0 and s.duration_s == 30.0 for s in sets)
    assert bench.set_warmup(sets[0], quick=False) == 4.0
    scans = tracking_sets.make_scans(sets[0], seed=1)
    assert np.allclose(np.diff([s.t for s in scans]), 1.0) and len(scans) >= 30


def test_reflectors_add_their_plots_and_change_nothing_else() -> None:
    """`--reflectors`: each fixed reflector's plots come at its own rate, near its place; the
    targets, their detections and the clutter are drawn as without them."""
    base = tracking_sets.SetSpec("t", tracking_sets.LONG_RANGE, 5, 4.0, pd=0.8, duration_s=5.0)
    plain = tracking_sets.make_scans(base, seed=4)
    flicker = tracking_sets.make_scans(replace(base, reflectors=10), seed=4)
    reflectors = tracking_sets._Reflectors(replace(base, reflectors=10), 4)
    extra = sum(b.z.shape[0] - a.z.shape[0] for a, b in zip(plain, flicker, strict=True))
    mean = float(reflectors.pd.sum()) * len(plain)
    assert abs(extra - mean) <= Z * math.sqrt(mean)
    assert all(
        np.array_equal(a.truth, b.truth) and a.n_true == b.n_true for a, b in zip(plain, flicker, strict=True)
    )
    for a, b in zip(plain, flicker, strict=True):  # the same rows, and the rest on a reflector
        rows = {tuple(row) for row in a.z.tolist()}
        rest = np.array([row for row in b.z.tolist() if tuple(row) not in rows]).reshape(-1, 3)
        assert len(rows) + rest.shape[0] == b.z.shape[0]
        at = tracking_sets.measure_true(reflectors.pos, np.zeros_like(reflectors.pos), 3)
        off = np.abs(rest[:, None, :] - at[None]) / np.asarray(tracking_sets.LONG_RANGE.sigma)
        assert np.all(off.max(axis=2).min(axis=1) < 6.0)


def test_the_site_survey_holds_the_sets_reflectors_and_clutter_and_no_target() -> None:
    """`--survey S`: what ours learns its reflector map from (the site with nothing flying): the
    set's false-alarm rate, its reflectors at the same places (their own draws), no target."""
    spec = replace(
        tracking_sets.SetSpec("t", tracking_sets.LONG_RANGE, 5, 4.0, pd=0.8, duration_s=5.0),
        reflectors=10,
        survey_s=20.0,
    )
    survey = tracking_sets.site_survey(spec, seed=4)
    reflectors = tracking_sets._Reflectors(spec, 4)
    assert len(survey) == round(20.0 * spec.radar.rate_hz)
    plots = sum(z.shape[0] for z in survey)
    mean = (spec.clutter + float(reflectors.pd.sum())) * len(survey)
    assert abs(plots - mean) <= Z * math.sqrt(mean)
    at = tracking_sets.measure_true(reflectors.pos, np.zeros_like(reflectors.pos), 3)
    z = np.concatenate(survey)
    near = (np.abs(z[:, None, :] - at[None]) / np.asarray(tracking_sets.LONG_RANGE.sigma)).max(axis=2) < 6.0
    on_reflector = int(near.any(axis=1).sum())
    expected = float(reflectors.pd.sum()) * len(survey)
    assert abs(on_reflector - expected) <= Z * math.sqrt(expected) + 0.01 * len(z)  # + clutter nearby
    first = tracking_sets.make_scans(spec, seed=4)[0].z
    assert not any(np.array_equal(first, s) for s in survey[:1])  # its own draws, not the run's


def test_the_false_track_rate_runs_clutter_alone_and_counts_every_confirmed_track() -> None:
    """benchmarks/false_track_rate.py: its scans hold the set's false alarms and nothing else, and
    a track confirmed on a real target counts (each id once), so its 0 is a count, not a default."""
    pytest.importorskip("stonesoup")
    rate = pytest.importorskip("false_track_rate")
    spec = {s.name: s for s in tracking_sets.FULL_SETS}["lr-20x50"]
    scans = rate.clutter_scans(spec, seed=5, n=200)
    assert all(s.truth.shape == (0, 3) and s.n_true == 0 for s in scans)
    plots = sum(s.z.shape[0] for s in scans)
    assert abs(plots - 200 * spec.clutter) <= Z * math.sqrt(200 * spec.clutter)
    assert [s.t for s in scans[:3]] == [0.0, 0.05, 0.1]
    lone = tracking_sets.SetSpec("lone", tracking_sets.LONG_RANGE, 3, 0.0, pd=1.0, duration_s=3.0)
    for tracker in (rate.Ours(lone), rate.Floor(lone)):
        confirmed, cpu = rate.confirmed_ever(tracker, tracking_sets.make_scans(lone, seed=1))
        assert confirmed == 3 and cpu > 0.0
    assert rate.alpha_per_hour(spec) == pytest.approx(1e-4 * 20.0 * 3600.0)
    _, sets, seeds = rate.parse(["--sets", "lr-20x10", "--clutter", "80", "--seeds", "3"])
    assert [s.name for s in sets] == ["lr-20x10-c80"] and sets[0].clutter == 80 and seeds == [1, 2, 3]
    for bad in (["--sets", "nope"], ["--clutter", "0"], ["--minutes", "0"], ["--seeds", "0"]):
        with pytest.raises(SystemExit):
            rate.parse(bad)
