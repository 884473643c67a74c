"""Two established tracks on one target (`fusion/twins.py`): the younger goes, the older keeps its
identity; two real targets close together, each detected, keep both of theirs."""

from __future__ import annotations

import numpy as np

from cuas_node.fusion.params import FusionParams
from cuas_node.fusion.tracker import Scan, Tracker
from cuas_node.fusion.tracks import Status
from cuas_node.fusion.twins import candidate_pairs, scans_to_tell
from cuas_node.kernel.pose import cartesian_to_spherical
from tests.plot_radar import RATE_HZ, SIGMA, plot_radar


def _fly(
    positions: list[np.ndarray],
    seconds: float,
    pd: float,
    seed: int,
    extra_until: float = 0.0,
    lifted: tuple[float, float, float] | None = None,
    splits_objects: bool = False,
) -> list[dict[int, int]]:
    """Targets at `positions` (ENU, m) flying east at 10 m/s, seen by the radar at 20 Hz with
    detection probability `pd`; until `extra_until` the first one also gives a second plot one
    elevation σ above its own (what starts a twin: a plot radar's two plots are two objects);
    during `lifted` (start, end in s, σ) its only plot is that many elevation σ above it (what
    starts a twin on any radar: the track loses the plots for a few scans, a new one starts on
    them, then both gate the target's plot again).
    Returns, per scan, the confirmed or coasting tracks' numbers and their nearest target."""
    rng = np.random.default_rng(seed)
    tracker, model = Tracker(FusionParams(), ["radar"]), plot_radar(splits_objects)
    history = []
    for k in range(round(seconds * RATE_HZ)):
        t = k / RATE_HZ
        truth = np.array([p + np.array([10.0 * t, 0.0, 0.0]) for p in positions])
        seen = truth[rng.random(len(truth)) < pd]
        z = np.column_stack(cartesian_to_spherical(seen)) if len(seen) else np.zeros((0, 3))
        if lifted is not None and lifted[0] <= t < lifted[1] and len(seen):
            z[0, 2] += lifted[2] * SIGMA[2]
        if t < extra_until:
            extra = np.column_stack(cartesian_to_spherical(truth[:1]))
            extra[:, 2] += SIGMA[2]
            z = np.vstack([z, extra])
        z = z + rng.normal(size=z.shape) * SIGMA
        r = np.broadcast_to(np.diag(SIGMA**2), (len(z), 3, 3)).copy()
        tracker.process(Scan(model, t, z, r))
        tracker.maintain(t)
        tb = tracker.table
        live = np.flatnonzero((tb.status == Status.CONFIRMED) | (tb.status == Status.COASTING))
        d = np.linalg.norm(tb.x[live, None, :3] - truth[None], axis=2)
        history.append({int(tb.number[s]): int(np.argmin(d[i])) for i, s in enumerate(live)})
    return history


def test_the_younger_of_two_tracks_on_one_target_goes_and_the_older_stays() -> None:
    start = np.array([0.0, 1450.0, 150.0])
    history = _fly([start], 6.0, pd=0.9, seed=1, extra_until=1.5)
    during = history[round(1.4 * RATE_HZ)]
    assert len(during) == 2, f"the second plot made no second track: {during}"
    older = min(during)
    end = history[-1]
    assert list(end) == [older], f"tracks at the end: {end}"
    gone_at = next(k for k, h in enumerate(history) if k > 1.5 * RATE_HZ and len(h) == 1) / RATE_HZ
    # the twin's count runs from the last extra plot: scans_to_tell at Pd 0.9, then the next maintain
    assert gone_at <= 1.5 + (scans_to_tell(0.9, FusionParams().false_track_probability) + 4) / RATE_HZ


def test_twins_sharing_one_plot_in_a_soft_update_are_told_too() -> None:
    """On a radar whose detections may split an object (a TI board's clustered point cloud), two
    established tracks that gate one plot both take it in the JPDA-style shared update: together
    they still took one plot, scan after scan, and the younger goes."""
    start = np.array([0.0, 1450.0, 150.0])
    twins = 0
    for seed in range(1, 9):  # a few of these make a twin (which lived to the end, 5.8 s, unfixed)
        history = _fly([start], 8.0, pd=0.9, seed=seed, lifted=(2.0, 2.3, 4.0), splits_objects=True)
        born = next((k for k, h in enumerate(history) if len(h) == 2), None)
        if born is None:
            continue
        twins += 1
        gone = next(k for k in range(born, len(history)) if len(history[k]) == 1)
        assert (gone - born) / RATE_HZ <= 1.5, f"seed {seed}: twins for {(gone - born) / RATE_HZ} s"
    assert twins >= 2, "the lifted plots made too few twins to test anything"


def test_two_targets_a_sigma_apart_each_detected_keep_both_tracks() -> None:
    """At 1.45 km 1° is 25 m: two drones 20 m apart in height, flying together, are under one
    elevation σ of each other, but give two plots a scan, so neither track is a twin."""
    a = np.array([0.0, 1450.0, 150.0])
    history = _fly([a, a + np.array([0.0, 0.0, 20.0])], 8.0, pd=0.9, seed=2)
    settled = history[round(2.0 * RATE_HZ) :]
    numbers = {n for h in settled for n in h}
    assert all(len(h) == 2 for h in settled), "a track was lost"
    assert len(numbers) == 2, f"identities changed: {sorted(numbers)}"


def test_candidate_pairs_are_tracks_that_gated_one_detection() -> None:
    rows = np.array([0, 1, 2, 0, 3, 1])
    meas = np.array([5, 5, 5, 7, 8, 7])
    a, b, m = candidate_pairs(rows, meas, np.array([False, True, True, True]))
    assert sorted(zip(a.tolist(), b.tolist(), m.tolist(), strict=True)) == [(0, 1, 5), (1, 2, 5)]
    a, b, m = candidate_pairs(rows, meas, np.array([True, False, True, True]))  # 0-1 share two
    assert sorted(zip(a.tolist(), b.tolist(), m.tolist(), strict=True)) == [(0, 1, 5), (1, 2, 5)]
    a, _, _ = candidate_pairs(rows, meas, np.array([True, True, True, False]))  # 3 shares nothing
    assert a.size == 0
    assert scans_to_tell(0.9, 1e-4) == 6 and scans_to_tell(0.7, 1e-4) == 14
