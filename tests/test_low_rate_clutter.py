"""Radars at 1 Hz in dense clutter (an outside test: a 2-60 m plot extractor, 10 false alarms a
scan): at one look a second a young track judges its second plot on its velocity prior alone,
its gate as wide as the coverage, so false alarms' young tracks took drones' first plots and
hovering drones waited 8-16 s for a track; an established track's gate after a miss holds false
alarms, which led tracks off hovering drones and kept lost ones alive. What answers it: a plot a
young track took against its odds also starts a track (`Tracker.process`, `also_starts`); a
plot's likelihood is the IMM's mixture (`imm.mixture_cost`); a track holding its target takes a
false alarm only as far as each model finds it likelier than clutter (`imm.miss_density`); plots
likelier clutter than the target feed no timeout."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

import numpy as np

from cuas_node.fusion.measurement_models import MeasurementModel, radar_model
from cuas_node.fusion.params import FusionParams
from cuas_node.fusion.tracker import Scan, Tracker
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.pose import Pose, cartesian_to_spherical
from tests.test_tracker_generalisation import Radar, run

SHORT_1HZ = Radar(
    2.0,
    60.0,
    (0.05, math.radians(1.0), math.radians(1.0), None),
    1.0,
    0.85,
    10.0,
    fov_az_rad=math.radians(30.0),
    fov_el_rad=math.radians(15.0),
    splits_objects=False,
)
SIGMA = np.array(SHORT_1HZ.sigma[:3])  # a 3-D plot extractor


def _tracker() -> tuple[Tracker, MeasurementModel]:
    tracker = Tracker(FusionParams(), ["radar"])
    tracker.stats.seed(0, SHORT_1HZ.clutter, SHORT_1HZ.rate_hz)  # its section's figures
    return tracker, radar_model(SHORT_1HZ.sensor(), range_rate=False)


def _scan(model: MeasurementModel, t: float, *points: tuple[float, float, float]) -> Scan:
    r, az, el = cartesian_to_spherical(np.array(points, dtype=float))
    z = np.column_stack([r, az, el])
    return Scan(model, t, z, np.repeat(np.diag(SIGMA**2)[None], len(points), axis=0))


def _tracks_at(tracker: Tracker, where: tuple[float, float, float], within_m: float = 1.0) -> list[int]:
    tb = tracker.table
    live = tb.active()
    near = np.linalg.norm(tb.x[live, :3] - np.array(where), axis=1) < within_m
    return [int(n) for n in tb.number[live[near]]]


def test_a_plot_a_false_alarms_young_track_took_also_starts_a_track() -> None:
    """A false alarm at A, then a drone's first plot 6 m away: the false alarm's track takes it
    (a 6 m jump in a second is a drone's speed), and the plot also starts a track of its own."""
    tracker, model = _tracker()
    a, b = (0.0, 30.0, 3.0), (5.0, 33.0, 3.5)
    tracker.process(_scan(model, 0.0, a))
    (young,) = _tracks_at(tracker, a)
    tracker.process(_scan(model, 1.0, b))
    numbers = _tracks_at(tracker, b)
    assert young in numbers, "the young track took the plot"
    assert len(numbers) == 2, "and the plot started a track of its own"


def test_hovering_drones_in_dense_clutter_at_1_hz_confirm_sooner_and_keep_their_tracks() -> None:
    """Three drones hovering 5-50 m from a 1 Hz plot extractor with 10 false alarms a scan, Pd
    0.85, seeds 1-10 (the generator of test_tracker_generalisation), 60 s each. Mean time to the
    first confirmed track (a target never confirmed counts the whole minute: one of the 30):
    14.8 s before, 7.9 s now (9.7 while a young track's gate held back plots it did not take;
    there, 13.9 without `also_starts`, 13.2 with the matched Gaussian's likelihood, 11.1 without
    IMM-PDA). Scans × confirmed tracks near no drone (tracks led off their drone by false alarms,
    and lost ones kept): 174 before, 54 now (152 if weak plots fed the timeouts). No false
    track either way."""
    times, astray, false = [], 0, 0
    for seed in range(1, 11):
        out = run(SHORT_1HZ, 3, 60.0, seed, speed=0.0)
        times += list(out.confirmed_at.values()) + [60.0] * (3 - len(out.confirmed_at))
        astray += out.astray
        false += out.false_confirmed
    assert statistics.mean(times) <= 10.5
    assert astray <= 90
    assert false == 0


def test_tracks_of_drones_gone_in_dense_clutter_end_soon() -> None:
    """The same drones stop being detected at 30 s (landed) while the false alarms go on: their
    tracks take a false alarm most scans. Such a plot says less for the drone than a miss says
    against it, so it does not feed the track's timeouts (`Tracker._record_hits`): they run from
    the last plot that said the drone was there. Seconds from 30 s to the last publication of a
    track that had followed a drone, seeds 1-10: mean 10.6 and at most 16 before, 7.7 and 14 now
    (11.2 and 16 if weak plots fed them; with false alarms taken in part by every established
    track, not only those holding their target: 15.6 and 29)."""
    lingered = []
    for seed in range(1, 11):
        out = run(SHORT_1HZ, 3, 60.0, seed, speed=0.0, gone_t=30.0)
        lingered.append(out.last_true_published - 30.0)
    assert statistics.mean(lingered) <= 9.0
    assert max(lingered) <= 15.0


def test_a_bearing_only_track_takes_a_radars_plot_of_its_drone_whole_in_clutter() -> None:
    """A microphone array's track of a drone 28-49 m out (bearings only: its range a guess of
    hundreds of metres), then a 1 Hz radar with 10 false alarms a scan sees the drone. The track
    is established with no evidence of absence, but its range is no place to judge a plot by:
    it is not "holding" for the radar (`TrackManager.holding`), so it takes the drone's plot whole
    and has its range at the first plot (a review found it taken in part, the weak plot feeding
    nothing, not even the track's range: 306 → 189 → 49 → 40 m, then a false alarm and 160 m
    off). Seeds 1-10: every track within 3 m of its drone from the third radar scan on."""
    from cuas_node.fusion.measurement_models import BearingModel, Coverage
    from tests.test_tracker_generalisation import measure

    mic = BearingModel("mic", Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0)), Coverage(300.0))
    radar = radar_model(SHORT_1HZ.sensor(), range_rate=False)
    always_seen = replace(SHORT_1HZ, pd=1.0)
    bearing_sigma = math.radians(2.0)
    for seed in range(1, 11):
        rng = np.random.default_rng(seed)
        tracker = Tracker(FusionParams(), ["mic", "radar"])
        tracker.stats.seed(1, SHORT_1HZ.clutter, SHORT_1HZ.rate_hz)
        drone = np.array([5.0, 40.0, 6.0]) * rng.uniform(0.7, 1.2)
        tb, number, errors = tracker.table, None, []
        for k in range(24 + 4 * 12):
            t = k * 0.25
            _, az, el = cartesian_to_spherical(drone[None])
            z = np.column_stack([az, el]) + rng.normal(0.0, bearing_sigma, (1, 2))
            r_mic = np.diag([bearing_sigma**2] * 2)[None]
            tracker.process(Scan(mic, t, z, r_mic, full_scan=False))
            radar_scan = t >= 6.0 and k % 4 == 0
            if radar_scan:  # the drone seen every scan, among the radar's false alarms
                z, r_radar = measure(always_seen, drone[None], np.zeros((1, 3)), np.ones(1, dtype=bool), rng)
                tracker.process(Scan(radar, t, z, r_radar))
            tracker.maintain(t)
            if k == 23:
                (slot,) = [s for s in tb.active() if tb.status[s] != Status.TENTATIVE]
                number = tb.number[slot]
            if radar_scan and t > 7.0:
                (slot,) = [s for s in tb.active() if tb.number[s] == number]
                errors.append(float(np.linalg.norm(tb.x[slot, :3] - drone)))
        assert max(errors) < 3.0, (seed, errors)


def test_a_lost_track_is_not_confirmed_again_by_plots_that_feed_it_nothing() -> None:
    """Drones landed at 30 s, false alarms going on: a coasting track that took two of them in a
    row was confirmed again (a new track's hits in a row), and `maintain`, finding it fed by no
    plot that said its drone was there, coasted it again at the same instant: 23 such flips over
    seeds 1-10 (a review). The last of those hits must be a plot that feeds it: none now."""
    from tests.test_tracker_generalisation import measure, targets

    flips = 0
    for seed in range(1, 11):
        rng = np.random.default_rng(seed)
        tracker = Tracker(FusionParams(), ["radar"])
        tracker.stats.seed(0, SHORT_1HZ.clutter, SHORT_1HZ.rate_hz)
        model = radar_model(SHORT_1HZ.sensor(), range_rate=False)
        pos, vel, _ = targets(SHORT_1HZ, 3, 0.0, rng)
        before: dict[int, int] = {}
        for k in range(60):
            t = float(k)
            z, r = measure(SHORT_1HZ, pos, vel, np.full(3, t < 30.0), rng)
            tracker.process(Scan(model, t, z, r))
            tb = tracker.table
            scanned = {int(tb.number[s]): int(tb.status[s]) for s in tb.active()}
            tracker.maintain(t)
            for s in tb.active():
                n, status = int(tb.number[s]), int(tb.status[s])
                coasted_again = status == Status.COASTING and scanned.get(n) == Status.CONFIRMED
                flips += coasted_again and before.get(n) == Status.COASTING
                before[n] = status
    assert flips == 0
