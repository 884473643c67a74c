"""What a scan says of an established track's existence (`TrackManager.record`): the evidence of
absence (a CUSUM of the track score), deletion on it, and confirmation again after coasting.

Driven at the unit level, one track in plain view of every scan, so that each scan is exactly a
hit of a given score gain or a miss: the arithmetic is the subject here; tests/test_track_cli.py
shows the same rules on plots end to end."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cuas_node.fusion.measurement_models import MeasurementModel, PositionVelocityModel, radar_model
from cuas_node.fusion.params import FusionParams, RadarSensor
from cuas_node.fusion.tracker import Tracker
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.pose import Pose

PD = 0.9  # the radar's Pd, held (not learnt from these scans): the arithmetic is the subject


def _one_track(
    status: int, absence: float = 0.0, splits_objects: bool = False
) -> tuple[Tracker, MeasurementModel, np.ndarray]:
    tracker = Tracker(FusionParams(), ["surv"])
    sensor = RadarSensor(
        "surv",
        Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0)),
        2500.0,
        range_rate=False,
        range_rate_sigma_mps=None,
        splits_objects=splits_objects,
    )
    slot = tracker.table.allocate(
        np.array([[0.0, 500.0, 50.0, 0.0, 0.0, 0.0]]), np.eye(6)[None] * 25.0, 0.0, 0, True
    )
    tracker.table.status[slot] = status
    tracker.table.absence[slot] = absence
    tracker.table.hits[slot] = 0
    tracker.manager.stats.pd = lambda bit: PD  # type: ignore[method-assign]
    # Every scan looks at the track: a miss is a miss in plain view.
    tracker.manager.looked_at = lambda active, bit, model, seen: np.ones(active.size, dtype=bool)  # type: ignore[method-assign]
    return tracker, radar_model(sensor, range_rate=False), slot


def _scan(tracker: Tracker, model: MeasurementModel, slot: np.ndarray, gain: float | None, t: float) -> None:
    """One full scan: a hit of this score gain, or (None) a miss."""
    hit = np.array([gain is not None])
    tracker.manager.record(slot, hit, np.array([gain or 0.0]), np.array([False]), model, True, 0, t)


def _misses_until_deleted(tracker: Tracker, model: MeasurementModel, slot: np.ndarray) -> int:
    misses = 0
    while not tracker.table.absent[slot][0]:
        misses += 1
        _scan(tracker, model, slot, None, 100.0 + misses)
        assert misses < 100
    return misses


def test_a_run_of_misses_deletes_after_the_misses_a_present_target_has_with_probability_alpha_squared() -> (
    None
):
    tracker, model, slot = _one_track(Status.CONFIRMED)
    assert _misses_until_deleted(tracker, model, slot) == tracker.manager.thresholds.misses_to_delete(PD) == 8


def test_a_learnt_pd_creeping_up_during_the_misses_does_not_put_deletion_off() -> None:
    """While a dead track's misses wait unproven, the live tracks' hits raise the learnt Pd a
    little every scan (0.9 -> 0.916 over the run here). The bar was whole misses at the newest Pd,
    a fraction of a miss above what the earlier, lighter misses added: 9 misses, not 8."""
    tracker, model, slot = _one_track(Status.CONFIRMED)
    creeping = iter(0.9 + 0.002 * k for k in range(100))
    tracker.manager.stats.pd = lambda bit: next(creeping)  # type: ignore[method-assign]
    steady = tracker.manager.thresholds.misses_to_delete(0.916)
    assert _misses_until_deleted(tracker, model, slot) == steady == 8


def test_a_hit_takes_back_its_evidence_and_no_plot_counts_worse_than_a_miss() -> None:
    """After 4 of the 8 misses that delete: a good hit (6 nats, 2.3 a miss) buys a few misses
    but does not restart the count (a run of misses used to start again at any hit); a weak one
    (a false alarm at the edge of a lost track's gate, gain 0.5) under one; and one that fits
    worse than clutter (gain −6) costs at most what a miss costs, not 6 nats (the plot may be a
    false alarm while the target was missed: ln(1 − Pd + Pd·g/λ) ≥ ln(1 − Pd))."""
    k = Tracker(FusionParams(), ["surv"]).manager.thresholds.misses_to_delete(PD)
    left = {}
    for gain in (6.0, 0.5, -6.0):
        tracker, model, slot = _one_track(Status.CONFIRMED)
        for t in range(4):
            _scan(tracker, model, slot, None, float(t))
        _scan(tracker, model, slot, gain, 4.0)
        left[gain] = _misses_until_deleted(tracker, model, slot)
    assert k - 4 + 2 <= left[6.0] < k
    assert k - 4 <= left[0.5] <= k - 4 + 1
    assert left[-6.0] >= k - 4 - 1


def test_a_coasting_track_is_confirmed_again_by_two_hits_in_a_row_or_by_hits_that_outweigh_its_misses() -> (
    None
):
    """After five misses at Pd 0.9 (11.5 nats) a first hit of 4.5 nats leaves the track coasting
    (it may be a false alarm in its grown gate); a second in a row confirms it. One hit that
    outweighs the misses alone confirms it at once. Weak hits between misses never do."""
    tracker, model, slot = _one_track(Status.COASTING, absence=5 * -math.log(1.0 - PD))
    _scan(tracker, model, slot, 4.5, 0.0)
    assert tracker.table.status[slot][0] == Status.COASTING
    _scan(tracker, model, slot, 4.5, 1.0)
    assert tracker.table.status[slot][0] == Status.CONFIRMED

    tracker, model, slot = _one_track(Status.COASTING, absence=5 * -math.log(1.0 - PD))
    _scan(tracker, model, slot, 12.0, 0.0)
    assert tracker.table.status[slot][0] == Status.CONFIRMED

    tracker, model, slot = _one_track(Status.COASTING, absence=2 * -math.log(1.0 - PD))
    for t in range(12):
        _scan(tracker, model, slot, 1.0 if t % 2 else None, float(t))
        assert tracker.table.status[slot][0] == Status.COASTING


def test_one_frame_fused_as_two_scans_is_one_look() -> None:
    """A frame with and without range-rate is fused as two scans at one instant (the smaller
    first). A coasting track hit by a weak plot in each part had its M-of-N window shifted twice,
    two hits in a row from one look, and was confirmed again by one frame."""
    sensor = RadarSensor(
        "surv",
        Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0)),
        2500.0,
        range_rate=True,
        range_rate_sigma_mps=0.5,
        splits_objects=False,
    )
    tracker, _, slot = _one_track(Status.COASTING, absence=5 * -math.log(1.0 - PD))
    for part, full in ((radar_model(sensor, range_rate=False), False), (radar_model(sensor), True)):
        tracker.manager.record(
            slot, np.array([True]), np.array([0.5]), np.array([False]), part, full, 0, 10.0
        )
    assert tracker.table.hits[slot][0] == 1
    assert tracker.table.status[slot][0] == Status.COASTING


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(-30.0, 30.0)), min_size=1, max_size=30))
def test_the_evidence_of_absence_never_falls_below_zero_and_grows_by_at_most_a_miss_a_scan(
    scans: list[float | None],
) -> None:
    tracker, model, slot = _one_track(Status.CONFIRMED)
    before = 0.0
    for t, gain in enumerate(scans):
        _scan(tracker, model, slot, gain, float(t))
        miss = -math.log(1.0 - PD)
        after = float(tracker.table.absence[slot][0])
        assert 0.0 <= after <= before + miss + 1e-9
        before = after


def _hits_to_confirm(false_alarms_per_scan: float, gain: float, model: MeasurementModel | None = None) -> int:
    tracker, radar, slot = _one_track(Status.TENTATIVE)
    model = radar if model is None else model
    tracker.manager.stats.specified_false_alarms[0] = false_alarms_per_scan
    for k in range(1, 10):
        _scan(tracker, model, slot, gain, 0.05 * k)
        if tracker.table.status[slot][0] == Status.CONFIRMED:
            return k
    raise AssertionError("never confirmed")


def test_a_radar_with_many_false_alarms_a_scan_asks_ln_of_their_number_more_of_each_track() -> None:
    """α is per scan: a scan with 50 false alarms starts 50 false hypotheses, so each needs
    ln 50 nats more than Wald's bar ln((1 − β)/α) (without it, 1000 false births a second
    confirmed a false track every half minute or so). Two hits that pass the bar with ln 50 / 2
    to spare confirm a track of a quiet radar's, not one of the busy radar's, which a third hit
    confirms; one false alarm a scan or fewer asks nothing more. The radar's specified rate
    (`false_alarms_per_scan`), not the learnt one, which counts targets being acquired."""
    bar = FusionParams()
    confirm = math.log((1.0 - bar.miss_probability) / bar.false_track_probability)
    gain = (confirm + 0.5 * math.log(50.0)) / 2.0
    assert _hits_to_confirm(1.0, gain) == 2
    assert _hits_to_confirm(0.2, gain) == 2
    assert _hits_to_confirm(50.0, gain) == 3
    # Only a radar's: Remote ID reports (3 of them, as any sensor that may split objects) are not.
    assert _hits_to_confirm(50.0, 2.0 * gain / 3.0, PositionVelocityModel("rid")) == 3


def test_a_hot_cells_extra_hits_never_ask_more_than_a_typical_window_gives() -> None:
    """A birth in a hot clutter cell needs two more hits, but never more than the median hits of
    the confirmation window at the sensor's Pd: at Pd 0.7 a splitting radar's 3 + 2 of 6 would
    be 5 of 6, which a real target there reaches in only 42 % of windows; it is 4."""
    confirmed_at = []
    for pd in (0.7, 0.95):
        tracker, model, slot = _one_track(Status.TENTATIVE, splits_objects=True)
        tracker.manager.stats.pd = lambda bit, pd=pd: pd  # type: ignore[method-assign]
        tracker.table.extra_hits[slot] = 2
        for k in range(1, 10):
            _scan(tracker, model, slot, 20.0, 0.05 * k)  # every hit far above the score's bar
            if tracker.table.status[slot][0] == Status.CONFIRMED:
                confirmed_at.append(k)
                break
    assert confirmed_at == [4, 5]
