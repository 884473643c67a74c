"""Our tracker side by side with Stone Soup's GNN and JPDA trackers, on identical measurements.

Why: Stone Soup is the reference framework for multi-target tracking; matching or beating its
GNN and JPDA (with efficient hypothesis management) trackers on accuracy, while running two orders
of magnitude faster, is what lets the node track a swarm on a Raspberry Pi.

Equivalent models on all three: EKF, nearly-constant-velocity motion with the same white-
acceleration noise (3 m/s² horizontal, 1 m/s² vertical), an elevation-bearing-range-*rate* radar at
20 Hz with the same noise (Stone Soup's `CartesianToElevationBearingRangeRate`, so both use the
4-D measurement), the same 0.999 gate, confirmation after 4 hits and deletion after 3 s unseen.
Measurement sets are generated here (not by the TI simulator) so that Pd and clutter are exactly
as stated; every tracker sees the same scans for each (set, seed).

Run: `.venv/bin/python benchmarks/tracker_vs_stonesoup.py [--quick] [--seeds N] [--sets a,b]`
(needs the `bench` extra: `pip install -e .[bench]`). Prints a table and `figure:` lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cuas_node.evaluation.metrics import gospa

FloatArray = npt.NDArray[np.float64]

RATE_HZ = 20.0
MAX_RANGE_M = 200.0
FOV_AZ = math.radians(60.0)  # half-angles, like the node's radar config
FOV_EL = math.radians(40.0)
SIGMA = np.array([0.15, math.radians(1.0), math.radians(2.0), 0.1])  # range, az, el, radial
ACCEL_H, ACCEL_V = 3.0, 1.0
GATE_P = 0.999
CONFIRM_HITS = 4
DELETE_AFTER_S = 3.0
HOLD_S = 6 / RATE_HZ  # Stone Soup's trackers drop a track after 6 missed scans; ours coasts then
GOSPA_C = 100.0
JPDA_BUDGET_S = 600.0  # per set (all seeds): beyond this JPDA is abandoned and GNN is the reference


@dataclass(frozen=True)
class SetSpec:
    name: str
    targets: int
    clutter: float
    pd: float = 0.9
    stress: bool = False
    duration_s: float = 8.0


@dataclass(frozen=True)
class Scan:
    t: float
    z: FloatArray  # (M, 4) range, az (from boresight, clockwise), el, radial; sensor at the origin
    truth: FloatArray  # (N, 3) ENU positions of targets inside the radar's coverage


# Durations keep the whole run (five seeds, both Stone Soup trackers) within the 45 minutes
# on this machine: Stone Soup's per-scan cost grows steeply with clutter and targets.
FULL_SETS = [
    SetSpec("5x10", 5, 10),
    SetSpec("20x10", 20, 10, duration_s=6.0),
    SetSpec("20x50", 20, 50, duration_s=3.0),
    SetSpec("100x10", 100, 10, duration_s=2.5),
    SetSpec("stress", 20, 30, pd=0.8, stress=True),  # 8 s: shorter would make its crossers faster
]
QUICK_SETS = [
    SetSpec("5x10", 5, 10, duration_s=2.0),
    SetSpec("10x10", 10, 10, duration_s=2.0),
    SetSpec("10x30", 10, 30, duration_s=2.0),
    SetSpec("30x10", 30, 10, duration_s=1.5),
    SetSpec("stress", 10, 20, pd=0.8, stress=True, duration_s=2.0),
]


# -- measurement sets ----------------------------------------------------------------------------


def _to_spherical(p: FloatArray, v: FloatArray) -> FloatArray:
    r = np.linalg.norm(p, axis=1)
    az = np.arctan2(p[:, 0], p[:, 1])
    el = np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))
    rdot = np.einsum("ij,ij->i", p, v) / np.maximum(r, 1e-9)
    return np.stack([r, az, el, rdot], axis=1)


def make_scans(spec: SetSpec, seed: int) -> list[Scan]:
    """Truth and detections for one (set, seed). Targets start inside coverage; in the stress set
    half of them fly through one common point (crossing) and all turn at up to 0.4 rad/s, changing
    turn rate every 2-4 s (manoeuvring)."""
    rng = np.random.default_rng(seed * 7919 + spec.targets * 31 + int(spec.clutter))
    n = spec.targets
    r0 = rng.uniform(40.0, 170.0, n)
    az0 = rng.uniform(-0.8, 0.8, n)
    pos = np.stack([r0 * np.sin(az0), r0 * np.cos(az0), rng.uniform(10.0, 60.0, n)], axis=1)
    speed = rng.uniform(4.0, 15.0, n)
    heading = rng.uniform(0.0, 2 * math.pi, n)
    if spec.stress:
        cross = np.arange(n) < n // 2
        centre = np.array([0.0, 100.0])
        to_centre = centre - pos[cross, :2]
        heading[cross] = np.arctan2(to_centre[:, 0], to_centre[:, 1])
        speed[cross] = np.linalg.norm(to_centre, axis=1) / (spec.duration_s / 2.0)
    vel = np.stack([speed * np.sin(heading), speed * np.cos(heading), rng.normal(0.0, 0.5, n)], axis=1)
    turn = np.zeros(n)
    next_change = rng.uniform(0.0, 2.0, n)
    dt_s = 1.0 / RATE_HZ
    lam_volume = 1.0
    scans: list[Scan] = []
    for k in range(int(spec.duration_s * RATE_HZ)):
        t = k * dt_s
        if k:
            if spec.stress:
                change = t >= next_change
                turn[change] = rng.uniform(-0.4, 0.4, int(change.sum()))
                next_change[change] = t + rng.uniform(2.0, 4.0, int(change.sum()))
                c, s = np.cos(turn * dt_s), np.sin(turn * dt_s)
                vx, vy = vel[:, 0].copy(), vel[:, 1].copy()
                vel[:, 0], vel[:, 1] = c * vx + s * vy, -s * vx + c * vy
            pos = pos + vel * dt_s
        sph = _to_spherical(pos, vel)
        inside = (sph[:, 0] <= MAX_RANGE_M) & (np.abs(sph[:, 1]) <= FOV_AZ) & (np.abs(sph[:, 2]) <= FOV_EL)
        detected = inside & (rng.random(n) < spec.pd)
        z_true = sph[detected] + rng.normal(0.0, 1.0, (int(detected.sum()), 4)) * SIGMA
        m = rng.poisson(spec.clutter * lam_volume)
        clutter = np.stack(
            [
                rng.uniform(5.0, MAX_RANGE_M, m),
                rng.uniform(-FOV_AZ, FOV_AZ, m),
                rng.uniform(-FOV_EL, FOV_EL, m),
                rng.uniform(-20.0, 20.0, m),
            ],
            axis=1,
        )
        z = np.concatenate([z_true, clutter])[rng.permutation(int(detected.sum()) + m)]
        scans.append(Scan(t, z, pos[inside].copy()))
    return scans


# -- the trackers ---------------------------------------------------------------------------------

TrackerStep = Callable[[Scan], FloatArray]
"""Process one scan; return the positions (K, 3) of the tracks it reports (confirmed ones)."""


def ours() -> TrackerStep:
    """Our tracker through its direct API. Kept to this one function so that the lead can follow
    changes to the tracker (e.g. an IMM) in one place."""
    from cuas_node.fusion.params import FusionParams, RadarSensor
    from cuas_node.fusion.tracker import RadarScan, Tracker
    from cuas_node.fusion.tracks import Status
    from cuas_node.kernel.pose import Pose

    params = FusionParams(
        confirm_m=CONFIRM_HITS,
        confirm_n=6,
        gate_probability=GATE_P,
        delete_after_s=DELETE_AFTER_S,
        coast_after_s=HOLD_S,
        process_accel_mps2=ACCEL_H,
        process_accel_vertical_mps2=ACCEL_V,
        max_tracks=1024,
    )
    tracker = Tracker(params, ["radar"])
    geometry = RadarSensor(
        "radar", Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0)), MAX_RANGE_M, FOV_AZ, FOV_EL
    )

    def step(scan: Scan) -> FloatArray:
        sigmas = np.broadcast_to(SIGMA, scan.z.shape).copy()
        tracker.process_radar(RadarScan("radar", scan.t, scan.z, sigmas), geometry)
        tracker.maintain(scan.t)
        # Report the tracks held as alive, as Stone Soup does: a track not updated for HOLD_S is
        # coasting (kept for the operator, but not claimed as a current position).
        slots = np.flatnonzero(tracker.table.status == Status.CONFIRMED)
        return np.asarray(tracker.table.x[slots, :3], dtype=np.float64)

    return step


class _Feed:
    """Stone Soup pulls (time, detections) from its detector; we push one scan at a time."""

    def __init__(self) -> None:
        self.item: tuple[dt.datetime, set[Any]] | None = None

    def __iter__(self) -> Iterator[tuple[dt.datetime, set[Any]]]:
        while True:
            assert self.item is not None
            yield self.item


def stonesoup(kind: str, spec: SetSpec) -> TrackerStep:
    """Stone Soup `MultiTargetTracker` + `GNNWith2DAssignment` (kind "gnn") or
    `MultiTargetMixtureTracker` + `JPDAwithEHM` (kind "jpda"), EKF, same models and thresholds."""
    from scipy.stats import chi2
    from stonesoup.dataassociator.neighbour import GNNWith2DAssignment
    from stonesoup.dataassociator.probability import JPDAwithEHM
    from stonesoup.deleter.time import UpdateTimeDeleter
    from stonesoup.hypothesiser.distance import DistanceHypothesiser
    from stonesoup.hypothesiser.probability import PDAHypothesiser
    from stonesoup.initiator.simple import MultiMeasurementInitiator
    from stonesoup.measures import Mahalanobis
    from stonesoup.models.measurement.nonlinear import CartesianToElevationBearingRangeRate
    from stonesoup.models.transition.linear import (
        CombinedLinearGaussianTransitionModel,
        ConstantVelocity,
    )
    from stonesoup.predictor.kalman import ExtendedKalmanPredictor
    from stonesoup.tracker.simple import MultiTargetMixtureTracker, MultiTargetTracker
    from stonesoup.types.detection import Detection
    from stonesoup.types.state import GaussianState
    from stonesoup.updater.kalman import ExtendedKalmanUpdater

    transition = CombinedLinearGaussianTransitionModel(
        [ConstantVelocity(ACCEL_H**2), ConstantVelocity(ACCEL_H**2), ConstantVelocity(ACCEL_V**2)]
    )
    # Stone Soup measures (elevation, bearing from +x counter-clockwise, range, range rate).
    sig = SIGMA[[2, 1, 0, 3]]
    model = CartesianToElevationBearingRangeRate(
        ndim_state=6, mapping=(0, 2, 4), velocity_mapping=(1, 3, 5), noise_covar=np.diag(sig**2)
    )
    predictor = ExtendedKalmanPredictor(transition)
    updater = ExtendedKalmanUpdater(model)
    gate = math.sqrt(float(chi2.ppf(GATE_P, 4)))
    gnn = GNNWith2DAssignment(DistanceHypothesiser(predictor, updater, Mahalanobis(), missed_distance=gate))
    prior = GaussianState(np.zeros((6, 1)), np.diag([0.0, 15.0**2, 0.0, 15.0**2, 0.0, 15.0**2]))
    initiator = MultiMeasurementInitiator(
        prior_state=prior,
        measurement_model=model,
        # A held (tentative) track that has missed 6 scans can no longer make 4-of-6: drop it.
        deleter=UpdateTimeDeleter(dt.timedelta(seconds=6.5 / RATE_HZ)),
        data_associator=gnn,
        updater=updater,
        min_points=CONFIRM_HITS,
    )
    deleter = UpdateTimeDeleter(dt.timedelta(seconds=DELETE_AFTER_S))
    feed = _Feed()
    tracker: Any
    if kind == "gnn":
        tracker = MultiTargetTracker(
            initiator=initiator, deleter=deleter, detector=feed, data_associator=gnn, updater=updater
        )
    else:
        volume = (2 * FOV_EL) * (2 * FOV_AZ) * (MAX_RANGE_M - 5.0) * 40.0
        pda = PDAHypothesiser(
            predictor,
            updater,
            clutter_spatial_density=spec.clutter / volume,
            prob_detect=spec.pd,
            prob_gate=GATE_P,
        )
        tracker = MultiTargetMixtureTracker(
            initiator=initiator,
            deleter=deleter,
            detector=feed,
            data_associator=JPDAwithEHM(pda),
            updater=updater,
        )
    epoch = dt.datetime(2024, 1, 1)
    it = iter(tracker)

    def step(scan: Scan) -> FloatArray:
        when = epoch + dt.timedelta(seconds=scan.t)
        z = scan.z
        bearing = np.mod(math.pi / 2 - z[:, 1] + math.pi, 2 * math.pi) - math.pi
        feed.item = (
            when,
            {
                Detection(np.array([[e], [b], [r], [rr]]), timestamp=when, measurement_model=model)
                for e, b, r, rr in zip(z[:, 2], bearing, z[:, 0], z[:, 3], strict=True)
            },
        )
        _, tracks = next(it)
        if not tracks:
            return np.zeros((0, 3))
        return np.array([np.asarray(tr.state_vector, dtype=np.float64).ravel()[[0, 2, 4]] for tr in tracks])

    return step


# -- running ----------------------------------------------------------------------------------------


@dataclass
class RunStats:
    times_s: list[float]
    gospa: list[float]
    complete: bool = True


def run(step: TrackerStep, scans: Sequence[Scan], budget_s: float = math.inf) -> RunStats:
    """CPU time per scan (process_time) and GOSPA per scan, against the targets in coverage."""
    times: list[float] = []
    errors: list[float] = []
    wall0 = time.monotonic()
    for scan in scans:
        started = time.process_time()
        est = step(scan)
        times.append(time.process_time() - started)
        errors.append(gospa(scan.truth, est, c=GOSPA_C).total)
        if time.monotonic() - wall0 > budget_s:
            return RunStats(times, errors, complete=False)
    return RunStats(times, errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, smaller and shorter sets")
    parser.add_argument("--seeds", type=int, help="seeds per set (default 5, quick 1)")
    parser.add_argument("--sets", help="comma-separated set names to run (default: all)")
    parser.add_argument("--no-jpda", action="store_true", help="skip Stone Soup JPDA")
    args = parser.parse_args(argv)
    sets = QUICK_SETS if args.quick else FULL_SETS
    if args.sets:
        wanted = set(args.sets.split(","))
        sets = [s for s in sets if s.name in wanted]
    seeds = list(range(1, 1 + (args.seeds or (1 if args.quick else 5))))
    budget = JPDA_BUDGET_S / 20.0 if args.quick else JPDA_BUDGET_S
    print(f"{'set':>8} {'tracker':>8} {'mean ms':>9} {'p95 ms':>9} {'GOSPA':>8}  note")
    results: dict[str, dict[str, list[RunStats]]] = {}
    for spec in sets:
        per: dict[str, list[RunStats]] = {"ours": [], "ss_gnn": [], "ss_jpda": []}
        jpda_spent = 0.0
        for seed in seeds:
            scans = make_scans(spec, seed)
            per["ours"].append(run(ours(), scans))
            per["ss_gnn"].append(run(stonesoup("gnn", spec), scans))
            if not args.no_jpda and jpda_spent < budget:
                started = time.monotonic()
                per["ss_jpda"].append(run(stonesoup("jpda", spec), scans, budget - jpda_spent))
                jpda_spent += time.monotonic() - started
        jpda_done = len(per["ss_jpda"]) == len(seeds) and all(r.complete for r in per["ss_jpda"])
        for name, stats in per.items():
            if not stats:
                continue
            times = np.concatenate([s.times_s for s in stats]) * 1000.0
            err = float(np.mean([np.mean(s.gospa) for s in stats]))
            note = "" if name != "ss_jpda" or jpda_done else "did not finish within the budget"
            p95 = np.percentile(times, 95)
            print(f"{spec.name:>8} {name:>8} {times.mean():9.3f} {p95:9.3f} {err:8.2f}  {note}")
        results[spec.name] = per
        sys.stdout.flush()

    def mean_time(stats: list[RunStats]) -> float:
        return float(np.mean(np.concatenate([s.times_s for s in stats])))

    big = max(sets, key=lambda s: s.targets)
    ratio = mean_time(results[big.name]["ss_gnn"]) / mean_time(results[big.name]["ours"])
    print(f"figure: speed_ratio_vs_stonesoup_gnn_{big.targets} = {ratio:.0f} x")
    for spec in sets:
        per = results[spec.name]
        ours_g = [float(np.mean(s.gospa)) for s in per["ours"]]
        jpda = per["ss_jpda"]
        if len(jpda) == len(seeds) and all(r.complete for r in jpda):
            ref, against = [float(np.mean(s.gospa)) for s in jpda], ""
        else:
            ref, against = (
                [float(np.mean(s.gospa)) for s in per["ss_gnn"]],
                "  (against GNN: JPDA did not finish)",
            )
        print(f"figure: gospa_ratio_vs_jpda_{spec.name} = {np.mean(ours_g) / np.mean(ref):.3f}{against}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
