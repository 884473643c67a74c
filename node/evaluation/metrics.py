"""Tracking metrics against ground truth, computed from per-step snapshots of truth and tracks.

Everything here is pure (no simulator, no clock), so the definitions can be unit-tested on hand-made
cases and reused by the benchmark. A run is a list of `Step`s: at each ground-truth time, the
targets that exist and the tracks a consumer would see (confirmed and coasting).

Two distance-based associations are used on purpose:
- GOSPA (Rahmathullah, García-Fernández, Svensson 2017) is a per-step optimal assignment with
  cut-off `c`; with α = 2 it splits exactly into localisation, missed and false parts, which is
  why it is the headline figure (one number, yet it says *what* went wrong).
- Continuity metrics (ID switches, fragmentations, time to first track, false tracks, labels,
  Remote ID binding) need an association that remembers the previous step, so an ID switch is a
  change of the *kept* partner, not an artefact of re-solving the assignment (CLEAR-MOT style):
  a truth keeps last step's track while it stays within its matching radius (`TruthFrame.match_m`,
  else `gate_m`); the rest are assigned optimally.
  A target that flew out of every sensor's coverage and came back with a new track is counted
  apart (`reacquired_after_leaving_coverage`), not as an ID switch or fragmentation: nothing a
  tracker could observe links the two, so it measures the scenario, not the tracker's association.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from cuas_node.kernel.pose import wrap
from cuas_node.kernel.reports import TrackReport

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

EXPECTED_LABEL: dict[str, str] = {
    "quadcopter": "multirotor",
    "fixed-wing": "fixed_wing",
    "bird": "bird",
    "aircraft": "aircraft",
}
"""Ground-truth target kind → the class label a correct classifier publishes."""

DRONE_LABELS = frozenset({"multirotor", "fixed_wing"})
DRONE_KINDS = frozenset(k for k, label in EXPECTED_LABEL.items() if label in DRONE_LABELS)
DEFAULT_GATE_M = 25.0
DEFAULT_BEARING_GATE_DEG = 10.0


# -- GOSPA ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GospaResult:
    """One step's GOSPA and its parts. The parts are in units of distance^p and add up to
    total^p; with p = 1 (what we report) they add up to the total itself."""

    total: float
    localisation: float
    missed: float
    false: float
    assigned: int
    missed_count: int
    false_count: int


def gospa(
    truth: npt.ArrayLike, estimates: npt.ArrayLike, c: float = 100.0, p: float = 1.0, alpha: float = 2.0
) -> GospaResult:
    """GOSPA distance between two finite sets of points (rows of `truth` and `estimates`).

    d = (min over assignments γ of Σ_{(i,j)∈γ} d(x_i, y_j)^p + c^p/α · (|X| + |Y| − 2|γ|))^(1/p),
    where only pairs closer than c may be assigned. With α = 2 a pair at distance ≥ c costs the same
    as leaving both unassigned (c^p), so assigning with the cost min(d, c)^p and then treating pairs
    at ≥ c as one miss plus one false target gives the same minimum and the decomposition.
    """
    if p < 1 or not 0 < alpha <= 2 or c <= 0:
        raise ValueError("GOSPA needs p >= 1, 0 < alpha <= 2 and c > 0")
    x = np.asarray(truth, dtype=np.float64).reshape(-1, 3) if np.size(truth) else np.zeros((0, 3))
    y = np.asarray(estimates, dtype=np.float64).reshape(-1, 3) if np.size(estimates) else np.zeros((0, 3))
    n, m = x.shape[0], y.shape[0]
    loc = 0.0
    k = 0
    if n and m:
        d = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2)
        cost = np.minimum(d, c) ** p
        rows, cols = linear_sum_assignment(cost)
        pair_d = d[rows, cols]
        real = pair_d < c
        k = int(real.sum())
        loc = float(np.sum(pair_d[real] ** p))
        if alpha < 2:
            # Unassigned-pair cost c^p/alpha*2 exceeds c^p: pairs beyond c still count at c^p.
            loc += float(np.sum(np.full(int((~real).sum()), c**p)))
            k = int(rows.size)
    penalty = c**p / alpha
    missed = penalty * (n - k)
    false = penalty * (m - k)
    total = (loc + missed + false) ** (1.0 / p)
    return GospaResult(total, loc, missed, false, k, n - k, m - k)


# -- a run, step by step ------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthFrame:
    """Targets existing at one step: ids, kinds, ENU positions (N,3) and whether each is inside
    some sensor's coverage (time to first track counts from entering coverage)."""

    ids: list[str]
    kinds: list[str]
    enu: FloatArray
    covered: BoolArray
    match_m: FloatArray | None = None  # per target, the matching radius (None: `associate`'s gate_m)


@dataclass(frozen=True)
class TrackFrame:
    """Tracks visible to a consumer at one step, positions extrapolated to the step's time."""

    ids: list[str]
    enu: FloatArray
    labels: list[str]
    uas_ids: list[str | None]
    consistency: list[str | None]
    bearing_only: BoolArray

    @staticmethod
    def empty() -> TrackFrame:
        return TrackFrame([], np.zeros((0, 3)), [], [], [], np.zeros(0, dtype=bool))


@dataclass(frozen=True)
class Step:
    t: float
    """Scenario seconds."""
    truth: TruthFrame
    tracks: TrackFrame


def track_frame(reports: Sequence[TrackReport], t_utc: float) -> TrackFrame:
    """Track reports (as from `NodeCore.tracks_now`) → the frame to score: only confirmed and
    coasting tracks, positions moved on to `t_utc` with their own velocity (what a consumer of the
    `tracks` topic would display at that instant)."""
    live = [r for r in reports if r.live]
    if not live:
        return TrackFrame.empty()
    enu = np.array([r.enu_m for r in live], dtype=np.float64)
    vel = np.array([r.vel_enu_mps for r in live], dtype=np.float64)
    dt = np.array([t_utc - r.t for r in live])
    enu = enu + vel * np.clip(dt, 0.0, None)[:, None]
    return TrackFrame(
        ids=[str(r.number) for r in live],
        enu=enu,
        labels=[r.classification.label for r in live],
        uas_ids=[r.remote_id.uas_id if r.remote_id else None for r in live],
        consistency=[r.remote_id.consistency if r.remote_id else None for r in live],
        bearing_only=np.array([r.bearing_only for r in live], dtype=bool),
    )


def associate(steps: Sequence[Step], gate_m: float = DEFAULT_GATE_M) -> list[dict[int, int]]:
    """Per step, truth index → track index, one-to-one, within each target's `match_m` (or
    `gate_m` where a frame has none), keeping last step's partners where still valid.
    Bearing-only tracks take no part (they have no range)."""
    out: list[dict[int, int]] = []
    previous: dict[str, str] = {}
    for step in steps:
        truth, tracks = step.truth, step.tracks
        pairs: dict[int, int] = {}
        usable = [j for j in range(len(tracks.ids)) if not tracks.bearing_only[j]]
        if truth.ids and usable:
            d = np.linalg.norm(truth.enu[:, None, :] - tracks.enu[None, usable, :], axis=2)
            radius = truth.match_m if truth.match_m is not None else np.full(len(truth.ids), gate_m)
            col_of = {tracks.ids[j]: c for c, j in enumerate(usable)}
            taken: set[int] = set()
            for i, tid in enumerate(truth.ids):
                c = col_of.get(previous.get(tid, ""))
                if c is not None and c not in taken and d[i, c] <= radius[i]:
                    pairs[i] = usable[c]
                    taken.add(c)
            rows = [i for i in range(len(truth.ids)) if i not in pairs]
            cols = [c for c in range(len(usable)) if c not in taken]
            if rows and cols:
                sub = d[np.ix_(rows, cols)]
                inside = sub <= radius[rows][:, None]
                r, cc = linear_sum_assignment(np.where(inside, sub, 1e9))
                for a, b in zip(r.tolist(), cc.tolist(), strict=True):
                    if inside[a, b]:
                        pairs[rows[a]] = usable[cols[b]]
        out.append(pairs)
        previous = {truth.ids[i]: tracks.ids[j] for i, j in pairs.items()}
    return out


@dataclass
class RunScore:
    """Raw sums and lists of one run (one seed), so several seeds aggregate without bias."""

    duration_s: float
    steps: int = 0
    gospa_sum: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    ttfc_s: list[float] = field(default_factory=list)
    targets_covered: int = 0
    targets_never_tracked: int = 0
    confirmed_tracks: int = 0
    false_tracks: int = 0
    id_switches: int = 0
    fragmentations: int = 0
    reacquired: int = 0
    class_correct: int = 0
    class_scored: int = 0
    drone_label_false_max_s: float = 0.0
    rid_correct: int = 0
    rid_scored: int = 0
    rid_consistency: dict[str, Counter[str]] = field(default_factory=dict)
    rid_last: dict[str, str] = field(default_factory=dict)
    bearing_tracks: int = 0
    drone_steps: int = 0
    drone_steps_with_bearing: int = 0
    cpu_per_scan_s: list[float] = field(default_factory=list)


def score_run(
    steps: Sequence[Step],
    *,
    duration_s: float,
    c_m: float = 100.0,
    gate_m: float = DEFAULT_GATE_M,
    remote_ids: Mapping[str, str] | None = None,
    bearing_origin: Sequence[float] = (0.0, 0.0, 0.0),
    bearing_gate_deg: float = DEFAULT_BEARING_GATE_DEG,
) -> RunScore:
    """Score one run. `remote_ids` maps a truth target id to the UAS id it broadcasts."""
    score = RunScore(duration_s=duration_s, steps=len(steps))
    remote_ids = remote_ids or {}
    pairs_per_step = associate(steps, gate_m)
    first_covered: dict[str, float] = {}
    first_tracked: dict[str, float] = {}
    last_partner: dict[str, str] = {}
    was_tracked: dict[str, bool] = {}
    left_coverage: dict[str, bool] = {}  # out of every coverage at some step since last matched
    track_matched: dict[str, bool] = {}
    drone_false_run: dict[str, tuple[float, float]] = {}
    bearing_ids: set[str] = set()
    origin = np.asarray(bearing_origin, dtype=np.float64)
    for step, pairs in zip(steps, pairs_per_step, strict=True):
        truth, tracks = step.truth, step.tracks
        positioned = ~tracks.bearing_only if tracks.ids else np.zeros(0, dtype=bool)
        # Score the targets the sensors could see now, and any still being tracked (a coasting
        # track on a target that just left the field of view is not a false track).
        scored = truth.covered.copy()
        scored[list(pairs)] = True
        g = gospa(truth.enu[scored], tracks.enu[positioned], c=c_m)
        for k, v in enumerate((g.total, g.localisation, g.missed, g.false)):
            score.gospa_sum[k] += v
        partner_of_track = {j: i for i, j in pairs.items()}
        for i, tid in enumerate(truth.ids):
            if truth.covered[i]:
                first_covered.setdefault(tid, step.t)
            j = pairs.get(i)
            tracked = j is not None
            if j is not None:
                if tid in first_covered:
                    first_tracked.setdefault(tid, step.t)
                track_id = tracks.ids[j]
                if left_coverage.get(tid, False) and last_partner.get(tid, track_id) != track_id:
                    score.reacquired += 1  # a new track after the target was out of every sensor's view
                else:
                    if tid in last_partner and last_partner[tid] != track_id:
                        score.id_switches += 1
                    if not was_tracked.get(tid, True) and tid in last_partner:
                        score.fragmentations += 1
                last_partner[tid] = track_id
                left_coverage[tid] = not truth.covered[i]
                expected = EXPECTED_LABEL.get(truth.kinds[i])
                if expected is not None:
                    score.class_scored += 1
                    score.class_correct += int(tracks.labels[j] == expected)
            elif not truth.covered[i]:
                left_coverage[tid] = True
            was_tracked[tid] = tracked
            uas = remote_ids.get(tid)
            if uas is not None:
                bound = [k for k, u in enumerate(tracks.uas_ids) if u == uas]
                if tracked or bound:
                    score.rid_scored += 1
                    score.rid_correct += int(j is not None and tracks.uas_ids[j] == uas)
        for j, track_id in enumerate(tracks.ids):
            matched = j in partner_of_track
            if not tracks.bearing_only[j]:
                track_matched[track_id] = track_matched.get(track_id, False) or matched
            else:
                bearing_ids.add(track_id)
            # A drone label on a track that is not on a drone: how long does it last in one go?
            on_drone = matched and truth.kinds[partner_of_track[j]] in DRONE_KINDS
            if tracks.labels[j] in DRONE_LABELS and not on_drone and not tracks.bearing_only[j]:
                start, _ = drone_false_run.get(track_id, (step.t, step.t))
                drone_false_run[track_id] = (start, step.t)
                score.drone_label_false_max_s = max(score.drone_label_false_max_s, step.t - start)
            else:
                drone_false_run.pop(track_id, None)
            uas, cons = tracks.uas_ids[j], tracks.consistency[j]
            if uas is not None and cons is not None:
                score.rid_consistency.setdefault(uas, Counter())[cons] += 1
                score.rid_last[uas] = cons
        drones = [i for i, kind in enumerate(truth.kinds) if kind in DRONE_KINDS]
        if drones:
            score.drone_steps += 1
            bearings = np.flatnonzero(tracks.bearing_only) if tracks.ids else np.zeros(0, dtype=np.intp)
            if bearings.size and _any_within_azimuth(
                truth.enu[drones] - origin, tracks.enu[bearings] - origin, bearing_gate_deg
            ):
                score.drone_steps_with_bearing += 1
    score.targets_covered = len(first_covered)
    score.targets_never_tracked = len(set(first_covered) - set(first_tracked))
    score.ttfc_s = sorted(first_tracked[t] - first_covered[t] for t in first_tracked)
    score.confirmed_tracks = len(track_matched)
    score.false_tracks = sum(1 for m in track_matched.values() if not m)
    score.bearing_tracks = len(bearing_ids)
    return score


def _any_within_azimuth(a: FloatArray, b: FloatArray, gate_deg: float) -> bool:
    az_a = np.arctan2(a[:, 0], a[:, 1])
    az_b = np.arctan2(b[:, 0], b[:, 1])
    diff = np.abs(wrap(az_a[:, None] - az_b[None, :]))
    return bool((diff <= math.radians(gate_deg)).any())


# -- aggregation over seeds ----------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values), q)), 3)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def aggregate(runs: Sequence[RunScore], c_m: float) -> dict[str, Any]:
    """The JSON summary over one or more runs (seeds): GOSPA averaged over every step of every
    run, time to first track over every target of every run, counts summed."""
    steps = sum(r.steps for r in runs)
    g = [sum(r.gospa_sum[k] for r in runs) / steps if steps else 0.0 for k in range(4)]
    hours = sum(r.duration_s for r in runs) / 3600.0
    ttfc = sorted(v for r in runs for v in r.ttfc_s)
    consistency: dict[str, dict[str, Any]] = {}
    for uas in sorted({u for r in runs for u in r.rid_consistency}):
        counts: Counter[str] = Counter()
        for r in runs:
            counts.update(r.rid_consistency.get(uas, Counter()))
        total = sum(counts.values())
        consistency[uas] = {
            "last": runs[-1].rid_last.get(uas) if runs else None,
            "fractions": {k: round(v / total, 4) for k, v in sorted(counts.items())},
        }
    cpu = [v for r in runs for v in r.cpu_per_scan_s]
    drone_steps = sum(r.drone_steps for r in runs)
    return {
        "steps": steps,
        "gospa": {
            "c_m": c_m,
            "p": 1,
            "alpha": 2,
            "mean": round(g[0], 3),
            "localisation": round(g[1], 3),
            "missed": round(g[2], 3),
            "false": round(g[3], 3),
        },
        "time_to_first_confirmed_s": {
            "median": _percentile(ttfc, 50),
            "p90": _percentile(ttfc, 90),
            "targets": sum(r.targets_covered for r in runs),
            "never_confirmed": sum(r.targets_never_tracked for r in runs),
        },
        "confirmed_tracks": sum(r.confirmed_tracks for r in runs),
        "false_confirmed_tracks": sum(r.false_tracks for r in runs),
        "false_confirmed_tracks_per_hour": round(sum(r.false_tracks for r in runs) / hours, 2)
        if hours
        else None,
        "id_switches": sum(r.id_switches for r in runs),
        "fragmentations": sum(r.fragmentations for r in runs),
        "reacquired_after_leaving_coverage": sum(r.reacquired for r in runs),
        "classification_accuracy": _ratio(
            sum(r.class_correct for r in runs), sum(r.class_scored for r in runs)
        ),
        "drone_labelled_false_max_s": round(max((r.drone_label_false_max_s for r in runs), default=0.0), 3),
        "remote_id": {
            "binding_accuracy": _ratio(sum(r.rid_correct for r in runs), sum(r.rid_scored for r in runs)),
            "scored_steps": sum(r.rid_scored for r in runs),
            "consistency": consistency,
        },
        "bearing_only": {
            "tracks": sum(r.bearing_tracks for r in runs),
            "drone_steps_covered": _ratio(sum(r.drone_steps_with_bearing for r in runs), drone_steps),
        },
        "cpu_per_scan_ms": {
            "mean": round(1000.0 * float(np.mean(cpu)), 4) if cpu else None,
            "p95": round(1000.0 * float(np.percentile(cpu, 95)), 4) if cpu else None,
            "scans": len(cpu),
        },
    }
