"""The tracker on radars it was not tuned on: a tiny independent generator (a radar at the origin,
targets flying straight or in coordinated turns, detection probability, uniform clutter over the
coverage) from a few metres (a TI board with range-rate) to 10 km (a 1° plot extractor without
range-rate), at 1 to 50 Hz. Nothing here is configured per sensor: the tracker learns the scan
rate, accuracy, clutter and detection probability from the scans."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from cuas_node.fusion.initiation import Thresholds, typical_hits
from cuas_node.fusion.measurement_models import Coverage, radar_model
from cuas_node.fusion.params import FusionParams, RadarSensor
from cuas_node.fusion.tracker import Scan, Tracker
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.pose import Pose, cartesian_to_spherical


@dataclass(frozen=True)
class Radar:
    min_range_m: float
    max_range_m: float
    sigma: tuple[float, float, float, float | None]  # range m, az rad, el rad, range-rate m/s
    rate_hz: float
    pd: float
    clutter: float  # false alarms per scan, uniform over the coverage
    fov_az_rad: float = math.radians(60.0)
    fov_el_rad: float = math.radians(30.0)
    splits_objects: bool = True  # False: a plot extractor (each resolved object once a scan)

    @property
    def range_rate(self) -> bool:
        return self.sigma[3] is not None

    def sensor(self) -> RadarSensor:
        pose = Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0))
        return RadarSensor(
            "radar",
            pose,
            self.max_range_m,
            self.fov_az_rad,
            self.fov_el_rad,
            min_range_m=0.0,
            splits_objects=self.splits_objects,
        )

    def resolution(self, rng: np.ndarray) -> np.ndarray:
        return np.maximum(self.sigma[0], rng * max(self.sigma[1], self.sigma[2]))


def targets(
    radar: Radar, n: int, speed: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start positions well inside the coverage, velocities, and turn rates (half of them turn)."""
    lo, hi = radar.min_range_m + 0.1 * (radar.max_range_m - radar.min_range_m), 0.8 * radar.max_range_m
    r = rng.uniform(lo, hi, n)
    az = rng.uniform(-0.6, 0.6, n) * radar.fov_az_rad
    el = rng.uniform(0.1, 0.5, n) * radar.fov_el_rad
    pos = np.column_stack([r * np.cos(el) * np.sin(az), r * np.cos(el) * np.cos(az), r * np.sin(el)])
    heading = rng.uniform(0, 2 * np.pi, n)
    vel = np.column_stack([speed * np.sin(heading), speed * np.cos(heading), np.zeros(n)])
    omega = np.where(np.arange(n) % 2 == 0, 0.0, rng.uniform(-0.2, 0.2, n))
    return pos, vel, omega


def step(pos: np.ndarray, vel: np.ndarray, omega: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinated turn in the horizontal plane (straight where omega = 0)."""
    c, s = np.cos(omega * dt), np.sin(omega * dt)
    v = np.column_stack([c * vel[:, 0] + s * vel[:, 1], -s * vel[:, 0] + c * vel[:, 1], vel[:, 2]])
    return pos + 0.5 * (vel + v) * dt, v


def measure(
    radar: Radar, pos: np.ndarray, vel: np.ndarray, present: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    r, az, el = cartesian_to_spherical(pos)
    seen = (
        present
        & (r >= radar.min_range_m)
        & (r <= radar.max_range_m)
        & (np.abs(az) <= radar.fov_az_rad)
        & (np.abs(el) <= radar.fov_el_rad)
        & (rng.random(r.size) < radar.pd)
    )
    radial = np.einsum("ij,ij->i", pos, vel) / r
    cols = [r, az, el, radial] if radar.range_rate else [r, az, el]
    sig = np.array([s for s in radar.sigma if s is not None])
    z = np.column_stack(cols)[seen] + rng.normal(size=(int(seen.sum()), sig.size)) * sig
    k = rng.poisson(radar.clutter)
    clutter = [
        rng.uniform(radar.min_range_m, radar.max_range_m, k),
        rng.uniform(-radar.fov_az_rad, radar.fov_az_rad, k),
        rng.uniform(-radar.fov_el_rad, radar.fov_el_rad, k),
    ]
    if radar.range_rate:
        clutter.append(rng.uniform(-20.0, 20.0, k))
    z = np.vstack([z, np.column_stack(clutter)])
    r_cov = np.zeros((z.shape[0], sig.size, sig.size))
    r_cov[:, np.arange(sig.size), np.arange(sig.size)] = sig**2
    return z, r_cov


@dataclass
class Outcome:
    tracker: Tracker
    confirmed_at: dict[int, float]  # target → time of its first confirmed track
    false_confirmed: int
    hypotheses: int  # clutter detections over the run: each a possible false hypothesis
    last_true_published: float  # the last time a published track that had followed a target was
    gone_t: float  # from when no target could be seen any more
    astray: int = 0  # (scan, confirmed track) pairs with the track near no target


def run(
    radar: Radar,
    n: int,
    duration_s: float,
    seed: int,
    speed: float = 15.0,
    gone_t: float = math.inf,
    exit_az: bool = False,
    appear_t: float = 0.0,
) -> Outcome:
    """Fly the targets, feed every scan (empty ones too) to the tracker, score as we go. After
    `gone_t` the targets stop being detected (landed, switched off), or, with `exit_az`, they are
    turned to fly out of the field of view in azimuth. Before `appear_t` there is only clutter."""
    rng = np.random.default_rng(seed)
    tracker = Tracker(FusionParams(), ["radar"])
    tracker.stats.seed(0, radar.clutter, radar.rate_hz)  # its section's figures, as the engine does
    model = radar_model(radar.sensor(), range_rate=radar.range_rate)
    pos, vel, omega = targets(radar, n, speed, rng)
    dt = 1.0 / radar.rate_hz
    true_numbers: set[int] = set()
    confirmed_numbers: set[int] = set()
    confirmed_at: dict[int, float] = {}
    last_true_published = -math.inf
    hypotheses = astray = 0
    all_out = math.inf
    for k in range(round(duration_s * radar.rate_hz)):
        t = k * dt
        if exit_az and t >= gone_t:
            # Out of the side of the field of view: fast and sideways.
            side = np.sign(np.arctan2(pos[:, 0], pos[:, 1]))
            vel = np.column_stack([side * 0.3 * radar.max_range_m, np.zeros(n), np.zeros(n)])
            omega = np.zeros(n)
        present = np.full(n, (exit_az or t < gone_t) and t >= appear_t)
        r, az, _ = cartesian_to_spherical(pos)
        if not (present & (np.abs(az) <= radar.fov_az_rad) & (r <= radar.max_range_m)).any():
            all_out = min(all_out, t)
        z, r_cov = measure(radar, pos, vel, present, rng)
        hypotheses += z.shape[0]
        tracker.process(Scan(model, t, z, r_cov))
        tracker.maintain(t)
        tb = tracker.table
        published = tracker.publishable(False)
        firm = published[tb.status[published] == Status.CONFIRMED]
        d = np.linalg.norm(tb.x[firm, None, :3] - pos[None, :, :], axis=2)
        near = d < 5.0 * radar.resolution(np.linalg.norm(pos, axis=1))[None, :] + 2.0
        astray += int(np.count_nonzero(~near.any(axis=1))) if t < gone_t else 0
        for row, s in enumerate(firm.tolist()):
            number = int(tb.number[s])
            confirmed_numbers.add(number)
            if near[row].any() and t < gone_t:
                true_numbers.add(number)
                for j in np.flatnonzero(near[row]).tolist():
                    confirmed_at.setdefault(j, t)
        if true_numbers.intersection(tb.number[published].tolist()):
            last_true_published = t
        pos, vel = step(pos, vel, omega, dt)
    false = len(confirmed_numbers - true_numbers)
    return Outcome(tracker, confirmed_at, false, hypotheses, last_true_published, all_out, astray)


LONG = Radar(300.0, 2500.0, (2.0, math.radians(1.0), math.radians(1.0), None), 20.0, 0.8, 50.0)
SHORT = Radar(5.0, 150.0, (0.15, math.radians(1.0), math.radians(2.0), 0.1), 50.0, 0.9, 10.0)
FAR_SLOW = Radar(500.0, 10_000.0, (10.0, math.radians(1.0), math.radians(1.0), None), 1.0, 0.9, 10.0)
NEAR_SLOW = Radar(5.0, 150.0, (0.15, math.radians(1.0), math.radians(2.0), 0.1), 1.0, 0.9, 5.0)


def false_bound(outcome: Outcome) -> float:
    """Each clutter detection starts at most one hypothesis, confirmed falsely with probability ≤ α
    (Wald): the expected number of false confirmations is ≤ α·hypotheses; allow three times that
    and one."""
    return 3.0 * FusionParams().false_track_probability * outcome.hypotheses + 1.0


@pytest.mark.parametrize(
    ("radar", "n", "duration", "ttfc_s", "speed"),
    [
        (LONG, 20, 10.0, 0.3, 15.0),
        (SHORT, 10, 6.0, 0.2, 5.0),
        (FAR_SLOW, 10, 60.0, 8.0, 30.0),
        (NEAR_SLOW, 5, 40.0, 8.0, 1.5),
    ],
    ids=["300-2500m-1deg-20Hz-50fa", "5-150m-ti-50Hz", "500m-10km-1Hz", "5-150m-1Hz"],
)
def test_every_target_confirmed_without_refusals_and_few_false_tracks(
    radar: Radar, n: int, duration: float, ttfc_s: float, speed: float
) -> None:
    out = run(radar, n, duration, seed=1, speed=speed)
    assert out.tracker.initiations_refused == 0
    assert len(out.confirmed_at) == n, f"confirmed {sorted(out.confirmed_at)} of {n}"
    assert float(np.median(list(out.confirmed_at.values()))) <= ttfc_s
    assert out.false_confirmed <= false_bound(out)


def test_fifty_false_alarms_per_scan_refuse_nothing_and_confirm_fast() -> None:
    """The issue's set: 20 targets at 300–2500 m, 1°, 2 m, no range-rate, 20 Hz, 50 false alarms
    per scan: every target confirmed, median time to first confirmed track ≤ 0.15 s (its
    third or fourth detection at Pd 0.9), no birth refused."""
    radar = Radar(300.0, 2500.0, (2.0, math.radians(1.0), math.radians(1.0), None), 20.0, 0.9, 50.0)
    out = run(radar, 20, 10.0, seed=2)
    assert out.tracker.initiations_refused == 0
    assert len(out.confirmed_at) == 20
    assert float(np.median(list(out.confirmed_at.values()))) <= 0.15 + 1e-9
    assert out.false_confirmed <= false_bound(out)


def test_five_hundred_targets_appearing_at_once_all_get_tracks_in_time() -> None:
    """The issue's largest set: 500 targets at 300–2500 m, 1°, no range-rate, 20 Hz, in view from
    the first scan. With the default configuration the table grows past its first 256 slots and the
    tentative pool takes the whole burst: every target confirmed, median time to first confirmed
    track ≤ 0.15 s, no birth refused (the fixed 256-slot table refused 2,540 births in this run)."""
    radar = Radar(300.0, 2500.0, (2.0, math.radians(1.0), math.radians(1.0), None), 20.0, 0.9, 10.0)
    out = run(radar, 500, 1.0, seed=5)
    assert out.tracker.initiations_refused == 0
    assert out.tracker.table.capacity > 500
    assert len(out.confirmed_at) == 500, f"{500 - len(out.confirmed_at)} targets never confirmed"
    assert float(np.median(list(out.confirmed_at.values()))) <= 0.15 + 1e-9
    assert out.false_confirmed <= false_bound(out)


def test_targets_seen_seven_times_in_ten_confirm_within_0_15_s_in_clutter() -> None:
    """The issue's time to first confirmed track, median ≤ 0.15 s at 20 Hz, at its lowest Pd (0.7)
    in 30 false alarms per scan: one or two good hits reach the track score's threshold, so the
    M-of-N count sets the pace (4 of 6 needed the first four looks to hit, 24 % of targets at
    Pd 0.7: median 0.2 s on each of these seeds; 3 of 6: 0.15 s), and still no false track."""
    radar = Radar(300.0, 2500.0, (2.0, math.radians(1.0), math.radians(1.0), None), 20.0, 0.7, 30.0)
    ttfc = []
    for seed in (6, 7, 8):
        out = run(radar, 20, 4.0, seed=seed)
        assert len(out.confirmed_at) == 20 and out.false_confirmed <= false_bound(out)
        ttfc += list(out.confirmed_at.values())
    assert float(np.median(ttfc)) <= 0.15 + 1e-9


def test_a_plot_extractor_confirms_on_two_hits_and_a_point_cloud_on_three() -> None:
    """The M-of-N guard is for the false detections a splitting sensor makes (fragments of an
    object's cluster pair up into a track); a plot extractor's tracks need two hits, the fewest
    that show motion, and the score: at Pd 0.7, a median of two looks after the first against
    three (0.1 s against 0.15 s at 20 Hz), with no more false tracks in 30 false alarms a scan."""
    medians = {}
    for splits in (False, True):
        for clutter in (0.0, 30.0):
            radar = Radar(
                300.0,
                2500.0,
                (2.0, math.radians(1.0), math.radians(1.0), None),
                20.0,
                0.7,
                clutter,
                splits_objects=splits,
            )
            ttfc = []
            for seed in (6, 7, 8):
                out = run(radar, 20, 3.0, seed=seed)
                assert len(out.confirmed_at) == 20 and out.false_confirmed <= false_bound(out)
                ttfc += list(out.confirmed_at.values())
            medians[splits, clutter] = float(np.median(ttfc))
    assert medians[False, 0.0] <= 0.1 + 1e-9, medians
    assert medians[True, 0.0] >= 0.15 - 1e-9, medians
    assert medians[False, 30.0] <= medians[True, 30.0], medians


def test_a_target_seen_seven_times_in_ten_confirms_in_dense_clutter() -> None:
    """At Pd 0.7 in 30 false alarms per scan, targets that come after 5 s of clutter confirm within
    a second (the clutter map judges its cells against their range rings, so uniform clutter
    heats none; the cap on a hot cell's extra hits: tests/test_track_existence.py)."""
    radar = Radar(300.0, 2500.0, (2.0, math.radians(1.0), math.radians(1.0), None), 20.0, 0.7, 30.0)
    out = run(radar, 20, 10.0, seed=4, appear_t=5.0)  # the targets come once the map is hot
    waited = np.array(list(out.confirmed_at.values())) - 5.0
    assert len(waited) == 20
    assert float(np.median(waited)) <= 0.4 + 1e-9
    assert waited.max() <= 1.0, "a target waited for a clean run of detections"
    assert out.false_confirmed <= false_bound(out)


def test_typical_hits_is_the_median_of_the_window() -> None:
    assert [typical_hits(6, pd) for pd in (0.5, 0.7, 0.8, 0.9, 1.0)] == [3, 4, 5, 6, 6]
    assert typical_hits(6, 0.0) == 0


@pytest.mark.parametrize(
    ("radar", "duration", "gone"), [(LONG, 8.0, 4.0), (SHORT, 5.0, 2.5), (FAR_SLOW, 60.0, 30.0)]
)
@pytest.mark.parametrize("exit_az", [False, True], ids=["vanish", "leave-fov"])
def test_published_tracks_end_within_a_few_scans_of_their_target(
    radar: Radar, duration: float, gone: float, exit_az: bool
) -> None:
    """When the targets vanish (missed in plain view) or fly out of the field of view, their
    published tracks (confirmed or coasting) end within a few scans, not `delete_after_s`; and
    the misses of targets that are gone do not teach the tracker that its radar is half blind
    (until 2026-12-04 they did: the learnt Pd fell to 0.3-0.75, which made every later miss
    weaker evidence, and the vanished targets' tracks lived on for 14-79 scans)."""
    out = run(radar, 6, duration, seed=3, gone_t=gone, exit_az=exit_az)
    assert len(out.confirmed_at) == 6
    # vs delete_after_s = 3 s: 60-150 scans at 20-50 Hz. A 1 Hz radar's vanished target is judged
    # by the misses-in-view rule (8 scans at Pd 0.9), which the timeout no longer cuts short.
    misses = Thresholds.from_probabilities(
        FusionParams().false_track_probability, FusionParams().miss_probability
    ).misses_to_delete(radar.pd)
    scans = 20 if radar.rate_hz >= 10 else misses + 2
    tb = out.tracker.table
    live = np.flatnonzero((tb.status == Status.CONFIRMED) | (tb.status == Status.COASTING))
    assert live.size <= false_bound(out) - 1.0, "tracks still published long after their targets"
    assert out.last_true_published <= out.gone_t + scans / radar.rate_hz
    assert abs(out.tracker.stats.pd(0) - radar.pd) <= 0.1


def test_targets_flying_along_the_edge_of_the_field_of_view_keep_their_tracks() -> None:
    """Targets just inside the top of the beam, flying along it: their detections' elevations
    scatter beyond the edge and so do their estimates. A missed scan or two there is what Pd
    gives, not evidence they left: each keeps one track number for the whole flight."""
    radar = Radar(5.0, 150.0, (0.15, math.radians(1.0), math.radians(2.0), 0.1), 10.0, 0.9, 2.0)
    rng = np.random.default_rng(4)
    tracker = Tracker(FusionParams(), ["radar"])
    model = radar_model(radar.sensor(), range_rate=True)
    n, dt = 6, 1.0 / radar.rate_hz
    ranges = np.linspace(40.0, 140.0, n)
    el = radar.fov_el_rad - 0.25 * radar.sigma[2]
    az0 = np.linspace(-0.5, 0.5, n) * radar.fov_az_rad
    rate = 5.0 / (ranges * math.cos(el))  # 5 m/s along the edge, at constant range and elevation
    numbers: list[set[int]] = [set() for _ in range(n)]
    for k in range(round(30.0 * radar.rate_hz)):
        t = k * dt
        az = az0 + rate * t
        pos = np.column_stack(
            [ranges * math.cos(el) * np.sin(az), ranges * math.cos(el) * np.cos(az), ranges * math.sin(el)]
        )
        heading = az + 0.5 * math.pi
        vel = 5.0 * np.column_stack([np.sin(heading), np.cos(heading), np.zeros(n)])
        z, r_cov = measure(radar, pos, vel, np.ones(n, dtype=bool), rng)
        tracker.process(Scan(model, t, z, r_cov))
        tracker.maintain(t)
        tb = tracker.table
        firm = np.flatnonzero(tb.status == Status.CONFIRMED)
        d = np.linalg.norm(tb.x[firm, None, :3] - pos[None, :, :], axis=2)
        nearest = np.argmin(d, axis=1) if n else np.zeros(0, dtype=np.intp)
        for row, j in enumerate(nearest.tolist()):
            if d[row, j] < 3.0 * radar.resolution(ranges[j : j + 1])[0]:
                numbers[j].add(int(tb.number[firm[row]]))
    assert all(len(kept) == 1 for kept in numbers), numbers


def test_distance_outside_a_coverage_is_to_its_nearest_violated_limit() -> None:
    coverage = Coverage(max_range_m=100.0, fov_az_rad=math.radians(60.0), fov_el_rad=math.radians(20.0))
    pose = Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0))
    el = math.radians(21.0)  # 1° above the top edge at 50 m: an arc of 50·π/180 m
    points = np.array(
        [
            [0.0, 50.0, 10.0],  # inside
            [0.0, 110.0, 0.0],  # 10 m beyond the range limit
            [0.0, 50.0 * math.cos(el), 50.0 * math.sin(el)],
        ]
    )
    d = coverage.distance_outside(pose, points)
    assert d[0] == 0.0
    assert d[1] == pytest.approx(10.0)
    assert d[2] == pytest.approx(50.0 * math.radians(1.0))
    assert not coverage.contains(pose, points[1:]).any() and coverage.contains(pose, points[:1]).all()
