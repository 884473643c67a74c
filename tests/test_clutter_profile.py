"""Where a radar's false alarms fall (node/fusion/clutter_profile.py): the profile in range,
elevation and range-rate, pooled over azimuth and per azimuth sector. What must hold: a ground
band's density near the radar is learnt within scans and priced near its truth, clutter on one
side priced higher there and not on the other, the sky beyond it is left at the
uniform λ; uniform clutter, however dense, leaves λ alone; standing clutter is priced at its
range-rate and not at a moving drone's; and through the whole node (`track`) a 1 Hz radar's
ground clutter stops raising confirmed tracks while a drone flying through it is still tracked
(without the profile, `fusion.clutter_profile = false`, it raises them all run long), and the
summary says where the false alarms concentrate."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from cuas_node.cli import main
from cuas_node.fusion.clutter_profile import ClutterProfile
from cuas_node.fusion.local_clutter import HALF_LIFE_S
from cuas_node.fusion.measurement_models import RADIAL_SPAN_MPS, Coverage
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.publish import wire
from tests.reflector_site import T0, enu, first_confirmed, write

SIGMA = np.array([2.0, math.radians(1.0), math.radians(1.0)])
RANGE_M = (200.0, 2500.0)
FOV_AZ, FOV_EL = math.radians(60.0), math.radians(20.0)
COVERAGE = Coverage(max_range_m=RANGE_M[1], fov_az_rad=FOV_AZ, fov_el_rad=FOV_EL, min_range_m=RANGE_M[0])
VOLUME = COVERAGE.volume()
GROUND_EL = (math.radians(-1.0), math.radians(2.0))  # the ground band's elevations


def _uniform(rng: np.random.Generator, mean: float) -> np.ndarray:
    m = int(rng.poisson(mean))
    return np.column_stack(
        [rng.uniform(*RANGE_M, m), rng.uniform(-FOV_AZ, FOV_AZ, m), rng.uniform(-FOV_EL, FOV_EL, m)]
    )


def _ground(rng: np.random.Generator, mean: float) -> np.ndarray:
    """Ground clutter: density ~1/r² in range from the minimum range, low elevations, all azimuths."""
    m = int(rng.poisson(mean))
    u = rng.random(m)
    lo, hi = RANGE_M
    r = 1.0 / (1.0 / lo - u * (1.0 / lo - 1.0 / hi))  # inverse of the 1/r² distribution's CDF
    return np.column_stack([r, rng.uniform(-FOV_AZ, FOV_AZ, m), rng.uniform(*GROUND_EL, m)])


def _ground_density(r: float, mean: float) -> float:
    """The ground band's true density at range r (per scan, m·rad²)."""
    lo, hi = RANGE_M
    per_metre = mean * r**-2 / (1.0 / lo - 1.0 / hi)
    return per_metre / (2.0 * FOV_AZ * (GROUND_EL[1] - GROUND_EL[0]))


def _run(profile: ClutterProfile, scans: list[np.ndarray], rate_hz: float, t0: float = 0.0) -> float:
    for k, z in enumerate(scans):
        profile.observe(t0 + k / rate_hz, z, np.ones(z.shape[0], dtype=bool), 1.0 / rate_hz)
    return t0 + (len(scans) - 1) / rate_hz


def test_a_ground_band_is_priced_near_its_density_within_scans_and_the_sky_stays_uniform() -> None:
    rng = np.random.default_rng(1)
    profile = ClutterProfile(SIGMA.copy(), COVERAGE)
    uniform = 45.0 / VOLUME  # the radar's false alarms a scan, as if spread evenly
    t = _run(profile, [np.concatenate([_uniform(rng, 5.0), _ground(rng, 40.0)]) for _ in range(30)], 1.0)
    near = np.array([[300.0, 0.3, math.radians(0.5)], [600.0, -0.5, math.radians(0.5)]])
    got = profile.density(t, near, RADIAL_SPAN_MPS)
    assert got is not None
    truth = np.array([_ground_density(r, 40.0) for r in near[:, 0]])
    print("after 30 scans, learnt / true at 300, 600 m:", got / truth)
    assert got[0] > 0.1 * truth[0] and got[0] > 10.0 * uniform  # within 30 scans at 300 m
    t = _run(
        profile, [np.concatenate([_uniform(rng, 5.0), _ground(rng, 40.0)]) for _ in range(120)], 1.0, t + 1.0
    )
    got = profile.density(t, near, RADIAL_SPAN_MPS)
    assert got is not None
    print("after 150 scans:", got / truth)
    assert np.all((got > 0.25 * truth) & (got < 1.5 * truth))  # (a low quantile: under the truth)
    sky = np.array([[2000.0, 0.1, math.radians(10.0)], [400.0, 0.1, math.radians(15.0)]])
    above = profile.density(t, sky, RADIAL_SPAN_MPS)
    assert above is None or np.all(above < uniform)  # the profile never raises λ there
    told = profile.summary()
    assert told is not None and told.peak_azimuth_deg is None  # all azimuths alike: none named


def test_the_fixture_learners_reference_is_the_mean_rate_standing_and_moving_together() -> None:
    """`spatial_density`, what the fixture learner weighs a place's plots against: a band's
    plots per scan and m·rad², half of them standing and half moving, pooled over all azimuths
    and read back at their mean (not `density`'s low quantile, which at a bin's few plots read a
    band at a third of its rate and let every block of it look busy), near and far."""
    rng = np.random.default_rng(11)
    profile = ClutterProfile(np.append(SIGMA, 0.1), COVERAGE)
    band = (math.radians(1.0), math.radians(4.0))  # one bin of elevation (3 sigmas from -20°)
    truth = 20.0 / ((RANGE_M[1] - RANGE_M[0]) * 2.0 * FOV_AZ * (band[1] - band[0]))
    scans = []
    for _ in range(1200):
        m = int(rng.poisson(20.0))
        doppler = np.where(rng.random(m) < 0.5, 0.0, rng.uniform(3.0, 9.0, m))
        scans.append(
            np.column_stack(
                [rng.uniform(*RANGE_M, m), rng.uniform(-FOV_AZ, FOV_AZ, m), rng.uniform(*band, m), doppler]
            )
        )
    _run(profile, scans, 20.0)
    near, far = [300.0, 0.2, math.radians(2.5)], [2400.0, -0.7, math.radians(2.5)]
    got = profile.spatial_density(np.array([near, far]))
    assert got is not None
    print("spatial / true, at 300 m and 2400 m:", got / truth)
    assert np.all((got > 0.8 * truth) & (got < 1.25 * truth))
    above = profile.spatial_density(np.array([[1000.0, 0.0, math.radians(12.0)]]))
    assert above is not None and above[0] == 0.0


def test_in_a_bin_too_small_to_be_a_reference_its_median_azimuth_sector_is() -> None:
    """A bin of a few of the fixture learner's blocks (`smallest`, here more than any bin) is
    most of a reflector in it, and its rate would hide it; its median azimuth sector (times the
    sectors) is what a band in every sector puts there, and a reflector in one does not raise it
    (a TI board's bins within ~10 m are a block or two, and band clutter there was learnt as
    fixtures; a review: one reflector in a bin of the band, judged by whether its plots spread
    over the sectors, took the band's reference away in the whole bin)."""
    rng = np.random.default_rng(13)
    profile = ClutterProfile(SIGMA.copy(), COVERAGE)
    band = (math.radians(1.0), math.radians(4.0))
    mast = np.array([900.0, -0.5, math.radians(12.0)])  # above the band, most of its bin's plots
    tree = np.array([1500.0, 0.3, math.radians(2.5)])  # in the band, more plots than its bin's band
    scans = []
    for _ in range(1200):
        m = int(rng.poisson(20.0))
        plots = np.column_stack(
            [rng.uniform(*RANGE_M, m), rng.uniform(-FOV_AZ, FOV_AZ, m), rng.uniform(*band, m)]
        )
        plots = np.vstack([plots, _uniform(rng, 5.0)])  # and a few false alarms everywhere
        for where, rate in ((mast, 0.5), (tree, 1.0)):
            if rng.random() < rate:
                plots = np.vstack([plots, where + rng.normal(0.0, 1.0, 3) * SIGMA])
        scans.append(plots)
    _run(profile, scans, 20.0)
    assert profile.n_sectors >= 3
    beside = np.array([1500.0, -0.6, math.radians(2.5)])  # the tree's bin, another sector
    places = np.array([[300.0, 0.2, math.radians(2.5)], beside, mast])
    everywhere = profile.spatial_density(places)
    small = profile.spatial_density(places, smallest=2.0 * float(profile.volume.max()))
    assert everywhere is not None and small is not None
    print("small bins / ring reference (band at 300 m, band beside the tree, mast):", small / everywhere)
    assert np.all((small[:2] > 0.7 * everywhere[:2]) & (small[:2] < 1.3 * everywhere[:2]))
    clutter = 5.0 / VOLUME
    cell = profile._cell(mast[None])
    own_bin = profile.counts.sum(axis=2).reshape(-1)[cell] / (
        profile.scans * profile.volume.reshape(-1)[cell]
    )
    assert small[2] < 2.0 * clutter < 0.2 * own_bin[0]  # the mast's bin: the clutter around it


def test_a_reflector_in_a_narrow_radars_bin_is_not_its_own_reference() -> None:
    """A radar ±12° wide: its ring bins are four of the fixture learner's blocks across, so a
    faint reflector's untracked plots (10 % of the scans) are much of its own bin. The reference
    is the median of the bin and its range neighbours: the clutter around it, not the reflector."""
    rng = np.random.default_rng(12)
    narrow = Coverage(
        max_range_m=RANGE_M[1], fov_az_rad=math.radians(12.0), fov_el_rad=FOV_EL, min_range_m=RANGE_M[0]
    )
    profile = ClutterProfile(SIGMA.copy(), narrow)
    where = np.array([650.0, 0.0, 0.01])
    scans = []
    for _ in range(3000):
        m = int(rng.poisson(5.0))
        plots = np.column_stack(
            [
                rng.uniform(*RANGE_M, m),
                rng.uniform(-narrow.fov_az_rad, narrow.fov_az_rad, m),
                rng.uniform(-FOV_EL, FOV_EL, m),
            ]
        )
        if rng.random() < 0.1:
            plots = np.vstack([plots, where + rng.normal(0.0, 1.0, 3) * SIGMA])
        scans.append(plots)
    _run(profile, scans, 10.0)
    got = profile.spatial_density(where[None])
    assert got is not None
    clutter = 5.0 / narrow.volume()
    cell = profile._cell(where[None])  # its own bin alone: the reflector's plots and the clutter's
    own_bin = profile.counts.sum(axis=2).reshape(-1)[cell] / (
        profile.scans * profile.volume.reshape(-1)[cell]
    )
    print("reference / clutter:", got[0] / clutter, "its own bin / clutter:", own_bin[0] / clutter)
    assert got[0] < 2.0 * clutter  # (a median of three bins of a few plots each: noisy)
    assert own_bin[0] > 5.0 * got[0]


@pytest.mark.parametrize("per_scan", [10.0, 50.0])
def test_uniform_clutter_never_raises_lambda(per_scan: float) -> None:
    """Uniform clutter's bins hold what λ holds; their low quantile stays below it everywhere."""
    rng = np.random.default_rng(2)
    profile = ClutterProfile(SIGMA.copy(), COVERAGE)
    t = _run(profile, [_uniform(rng, per_scan) for _ in range(1200)], 20.0)
    query = np.concatenate([_uniform(rng, per_scan) for _ in range(50)])
    got = profile.density(t, query, RADIAL_SPAN_MPS)
    assert got is not None
    print("largest learnt / uniform:", np.max(got) / (per_scan / VOLUME))
    assert np.max(got) < per_scan / VOLUME


def test_clutter_over_part_of_the_azimuths_is_priced_there_and_not_beyond() -> None:
    """Ground clutter on one side only (the sea west of a coastal mast, a town): pooled over the
    whole ring it reads at half its density; the share of it in each azimuth sector prices it
    near twice that there, and the clean side stays at the pooled figure."""
    rng = np.random.default_rng(7)
    profile = ClutterProfile(SIGMA.copy(), COVERAGE)

    def one_side() -> np.ndarray:
        z = _ground(rng, 40.0)
        z[:, 1] = -np.abs(z[:, 1])  # the west half of the azimuths only
        return np.concatenate([_uniform(rng, 3.0), z])

    t = _run(profile, [one_side() for _ in range(600)], 10.0)
    west = np.array([[400.0, -0.5, math.radians(0.5)], [800.0, -0.8, math.radians(0.5)]])
    east = west * [1.0, -1.0, 1.0]
    truth = np.array([2.0 * _ground_density(r, 40.0) for r in west[:, 0]])  # all of it on one side
    got_west, got_east = profile.density(t, west, RADIAL_SPAN_MPS), profile.density(t, east, RADIAL_SPAN_MPS)
    assert got_west is not None and got_east is not None
    pooled = ClutterProfile(SIGMA.copy(), COVERAGE)
    pooled.n_sectors = 1  # the same counts pooled over azimuth only
    rng = np.random.default_rng(7)
    t = _run(pooled, [one_side() for _ in range(600)], 10.0)
    ring = pooled.density(t, west, RADIAL_SPAN_MPS)
    assert ring is not None
    print(
        "west learnt / true:",
        got_west / truth,
        "pooled / true:",
        ring / truth,
        "east / pooled",
        got_east / ring,
    )
    assert np.all(got_west < truth)  # (a low quantile: under the truth)
    assert np.all(got_west > 1.4 * ring)  # towards the twice it should be
    assert np.allclose(got_east, ring)
    told = profile.summary()
    assert told is not None and told.peak_azimuth_deg is not None  # (`track`'s summary line)
    assert -60.0 <= told.peak_azimuth_deg[0] < told.peak_azimuth_deg[1] <= 0.0


def test_clutter_in_one_sector_at_every_range_is_told_as_concentrated() -> None:
    """Twenty false alarms a scan in one 15° sector, at every range and elevation, and five
    spread evenly (helper-89): flat in the ring, so only the sector prices it, and the summary
    must count and name it (it printed nothing when it counted the ring's bins alone)."""
    rng = np.random.default_rng(9)
    profile = ClutterProfile(SIGMA.copy(), COVERAGE)

    def scan() -> np.ndarray:
        band = _uniform(rng, 20.0)
        band[:, 1] = rng.uniform(math.radians(15.0), math.radians(30.0), band.shape[0])
        return np.concatenate([band, _uniform(rng, 5.0)])

    _run(profile, [scan() for _ in range(600)], 5.0)
    told = profile.summary()
    assert told is not None and told.peak_azimuth_deg is not None
    print("concentrated", told.concentrated, "of", told.per_scan, "at", told.peak_azimuth_deg)
    assert told.concentrated > 0.5 * told.per_scan  # `track` prints the line from a quarter
    assert told.peak_azimuth_deg == pytest.approx((15.0, 30.0))


def test_standing_clutter_is_priced_at_its_range_rate_not_at_a_moving_drones() -> None:
    rate_sigma = 0.2
    profile = ClutterProfile(np.append(SIGMA, rate_sigma), COVERAGE)
    rng = np.random.default_rng(3)
    span = 40.0  # the radar's Doppler span: uniform false alarms over ±20 m/s

    def scan() -> np.ndarray:
        ground = _ground(rng, 40.0)
        uniform = _uniform(rng, 5.0)
        return np.concatenate(
            [
                np.column_stack([ground, rng.normal(0.0, rate_sigma, ground.shape[0])]),
                np.column_stack([uniform, rng.uniform(-span / 2, span / 2, uniform.shape[0])]),
            ]
        )

    uniform = 45.0 / (VOLUME * span)
    t = _run(profile, [scan() for _ in range(60)], 1.0)
    at = [400.0, 0.2, math.radians(0.5)]
    got = profile.density(t, np.array([[*at, 0.05], [*at, 8.0]]), span)
    assert got is not None
    standing = _ground_density(400.0, 40.0) / (6.0 * rate_sigma)  # over the standing band, ±3 sigma
    print("standing learnt / true:", got[0] / standing, "moving / uniform:", got[1] / uniform)
    assert got[0] > 0.2 * standing and got[0] > 100.0 * uniform
    assert got[1] < uniform


@pytest.mark.parametrize("splits", [True, False])
def test_a_clusterers_split_return_counts_once(splits: bool) -> None:
    """Five plots within each other's noise a scan: one object's point cloud for a clusterer
    (`splits_objects`), five false alarms for a plot extractor."""
    rng = np.random.default_rng(4)
    profile = ClutterProfile(SIGMA.copy(), COVERAGE, splits_objects=splits)
    spot = np.array([800.0, 0.3, math.radians(5.0)])
    t = _run(profile, [spot + 0.3 * rng.normal(0.0, 1.0, (5, 3)) * SIGMA for _ in range(40)], 1.0)
    decayed = sum(0.5 ** ((t - k) / HALF_LIFE_S) for k in range(40))  # one plot a scan, decayed
    assert profile.counts.sum() / profile._scale(t) == pytest.approx(decayed * (1 if splits else 5))


TOML = f"""
[node]
id = "ground"
position = {{ lat = 52.0, lon = 4.0, alt_m = 0.0 }}

[[sensors]]
kind = "radar"
id = "surv"
min_range_m = {RANGE_M[0]}
max_range_m = {RANGE_M[1]}
fov_az_deg = 60
fov_el_deg = 20
range_sigma_m = 2.0
az_sigma_deg = 1.0
el_sigma_deg = 1.0
rate_hz = 1
false_alarms_per_scan = 45
mount = {{ offset_m = [0.0, 0.0, 20.0] }}
"""
DRONE_START = np.array([250.0, -0.4, math.radians(1.5)])  # range, az, el: low, in the ground band
DRONE_SPEED_MPS = 8.0


def _drone_at(t: float) -> np.ndarray:
    """A drone flying out through the ground band at 8 m/s, level, on a fixed bearing."""
    r, az, el = DRONE_START
    return np.array([r + DRONE_SPEED_MPS * t, az, math.atan2(r * math.sin(el), r + DRONE_SPEED_MPS * t)])


def _lines(seconds: int, seed: int, ground: float = 40.0) -> list[str]:
    """`track`'s input: one scan a second of the ground band, uniform clutter and the drone (Pd 0.85)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(seconds):
        t = T0 + k
        z = np.concatenate([_uniform(rng, 45.0 - ground), _ground(rng, ground)])
        if rng.random() < 0.85:
            z = np.concatenate([z, (_drone_at(float(k)) + rng.normal(0.0, 1.0, 3) * SIGMA)[None]])
        for r, az, el in z.tolist():
            m = RadarDetection("surv", t, t + 0.01, r, az, el, None, SIGMA[0], SIGMA[1], SIGMA[2], None, 15.0)
            out.append(wire.dumps(wire.measurement_record(m)))
    return out


def _false_and_drone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profiled: bool
) -> tuple[int, float, str]:
    """Through `track`: confirmed track ids never within 60 m of the drone, the first time a
    confirmed track was within 60 m of it (s after the start; inf: never), and the summary."""
    config = tmp_path / "ground.toml"
    config.write_text(TOML + ("" if profiled else "\n[fusion]\nclutter_profile = false\n"))
    path = write(tmp_path / "ground.jsonl", _lines(120, seed=5))
    assert main(["track", "--config", str(config), str(path)]) == 0
    out, err = capsys.readouterr()
    drone_ids: set[str] = set()
    confirmed: set[str] = set()
    first = math.inf
    for line in out.splitlines():
        doc = json.loads(line)
        if doc["type"] != "tracks":
            continue
        drone = enu(_drone_at(doc["t"] - T0)[None])[0] + np.array([0.0, 0.0, 20.0])
        for tr in doc["tracks"]:
            if tr["status"] != "confirmed":
                continue
            confirmed.add(tr["id"])
            if np.linalg.norm(np.array(tr["enu_m"]) - drone) < 60.0:
                drone_ids.add(tr["id"])
                first = min(first, doc["t"] - T0)
    assert first_confirmed(out) is not None
    return len(confirmed - drone_ids), first, err


def test_through_the_node_ground_clutter_stops_raising_tracks_and_a_drone_in_it_is_tracked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    false, first, told = _false_and_drone(tmp_path, capsys, profiled=True)
    control, control_first, untold = _false_and_drone(tmp_path, capsys, profiled=False)
    print(
        f"false confirmed tracks {false} (without {control}); "
        f"drone confirmed at {first} s (without {control_first} s)"
    )
    assert control >= 5 and false <= control // 4
    assert first < 15.0
    # The summary says where the false alarms concentrate: the band's near edge, at low elevation.
    said = re.search(
        r"radar 'surv': ([\d.]+) of its ([\d.]+) false alarms a scan fell .* the densest (\d+) times "
        r"\(at ([\d.]+)-([\d.]+) m, ([-+]?\d+)° to ([-+]?\d+)° elevation\)",
        told,
    )
    assert said is not None, told
    concentrated, per_scan, ratio, near, far, low, high = (float(g) for g in said.groups())
    assert 30.0 < concentrated <= per_scan < 50.0 and ratio > 20.0
    assert RANGE_M[0] - 20.0 <= near < far < 400.0 and -3.0 <= low < high <= 3.0
    assert "fell where they are denser" not in untold


def test_uniform_clutter_is_said_to_concentrate_nowhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same 45 false alarms a scan spread evenly: the summary names no concentration."""
    config = tmp_path / "uniform.toml"
    config.write_text(TOML)
    path = write(tmp_path / "uniform.jsonl", _lines(120, seed=6, ground=0.0))
    assert main(["track", "--config", str(config), str(path)]) == 0
    _, err = capsys.readouterr()
    assert "learnt Pd" in err and "fell where they are denser" not in err, err


def test_a_radar_configured_with_too_few_false_alarms_is_told_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The learnt false alarms `track` compares with `false_alarms_per_scan` are all the radar
    made, not only the share λ still spreads evenly once the profile took the ground's."""
    config = tmp_path / "under.toml"
    config.write_text(TOML.replace("false_alarms_per_scan = 45", "false_alarms_per_scan = 5"))
    path = write(tmp_path / "under.jsonl", _lines(120, seed=7))
    assert main(["track", "--config", str(config), str(path)]) == 0
    _, err = capsys.readouterr()
    said = re.search(r"it reported ([\d.]+) false alarms a scan for false_alarms_per_scan = 5", err)
    assert said is not None and 35.0 < float(said.group(1)) < 50.0, err


def test_plots_beyond_the_coverage_are_not_crammed_into_its_edge() -> None:
    """A radar configured smaller than it sees (range, elevation): its uniform clutter beyond the
    configured edges is not counted, so the bins at the edges are not priced as dense clutter."""
    rng = np.random.default_rng(8)
    small = Coverage(max_range_m=1931.9, fov_az_rad=FOV_AZ, fov_el_rad=math.radians(10.2), min_range_m=235.7)
    profile = ClutterProfile(SIGMA.copy(), small)

    def wide() -> np.ndarray:  # uniform over more than the configured coverage
        m = int(rng.poisson(60.0))
        return np.column_stack(
            [rng.uniform(100.0, 3000.0, m), rng.uniform(-FOV_AZ, FOV_AZ, m), rng.uniform(-FOV_EL, FOV_EL, m)]
        )

    t = _run(profile, [wide() for _ in range(300)], 5.0)
    inside = 60.0 * (1931.9 - 235.7) / 2900.0 * 10.2 / 20.0  # the plots a scan inside it
    edges = np.array([[1931.0, 0.1, 0.0], [236.0, 0.1, 0.0], [1000.0, 0.1, math.radians(10.1)]])
    got = profile.density(t, edges, RADIAL_SPAN_MPS)
    assert got is not None and np.all(got < inside / small.volume()), got * small.volume() / inside
    summary = profile.summary()
    assert summary is not None and summary.per_scan == pytest.approx(inside, rel=0.1)
    assert summary.concentrated < 0.25 * summary.per_scan  # `track` names no concentration
