"""False tracks an hour in clutter alone: what "0 false confirmed tracks" on 12 s sets means over hours.

The tracker benchmark's sets last 12-16 s; at 20 Hz and 50 false alarms a scan that is 240 scans,
and a tracker that confirms a false track every few minutes reads 0 on almost every one of them.
A mast runs for days. So this runs the same radars (benchmarks/tracking_sets.py) on clutter only,
uniform over the coverage at each set's false alarms per scan (Poisson), no targets, for
`--minutes` of scans per seed, and counts every track ever confirmed: each is false.

Our confirmation bar is Wald's, set from the configured `fusion.false_track_probability` α and
taken per scan (`TrackManager._hypotheses_bonus`): at most about α false tracks a scan of the
radar, α · rate · 3600 an hour (printed as `bound`; Wald's bound ignores the overshoot of the
last hit, so the true rate is usually below it). The floor (benchmarks/numpy_gnn.py) confirms on
the comparators' M-of-N count (`confirm_hits`) and has no bound to print. Both see the same scans.

Run: `.venv/bin/python benchmarks/false_track_rate.py [--quick] [--minutes M] [--seeds N]
[--sets a,b] [--clutter C]` (needs the `bench` extra). Prints a table and
`figure: false_tracks_per_hour_<set> = <value> /h` (ours) lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tracker_vs_stonesoup import Floor, Ours, Tracker, node_config
from tracking_sets import FULL_SETS, Scan, SetSpec, false_alarms

DEFAULT_SETS = ("lr-20x10", "lr-20x50", "ti-20x50")


def clutter_scans(spec: SetSpec, seed: int, n: int) -> list[Scan]:
    """`n` scans of the set's radar holding only its false alarms (no target, no reflector)."""
    rng = np.random.default_rng([seed, 0xC1A7])
    period = 1.0 / spec.radar.rate_hz
    empty, none = np.zeros((0, 3)), np.zeros(0, dtype=bool)
    return [
        Scan(k * period, false_alarms(spec.radar, int(rng.poisson(spec.clutter)), rng), empty, none, 0)
        for k in range(n)
    ]


def confirmed_ever(tracker: Tracker, scans: Sequence[Scan]) -> tuple[int, float]:
    """Distinct track ids confirmed at any scan, and the CPU seconds of the steps."""
    ids: set[object] = set()
    cpu = 0.0
    for scan in scans:
        ready = tracker.prepare(scan)
        started = time.process_time()
        tracker.step(scan, ready)
        cpu += time.process_time() - started
        ids.update(tracker.output().confirmed[0])
    return len(ids), cpu


def alpha_per_hour(spec: SetSpec) -> float:
    """Wald's bound on our false tracks an hour: α per scan of the radar."""
    alpha = node_config(spec).fusion.false_track_probability
    return alpha * spec.radar.rate_hz * 3600.0


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[SetSpec], list[int]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 minute, one seed (a smoke test)")
    parser.add_argument("--minutes", type=float, help="minutes of scans per seed (default 25, quick 1)")
    parser.add_argument("--seeds", type=int, help="seeds per set (default 2, quick 1)")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated set names")
    parser.add_argument("--clutter", type=float, metavar="C", help="every set's false alarms per scan")
    args = parser.parse_args(argv)
    pool = {s.name: s for s in FULL_SETS}
    unknown = [name for name in args.sets.split(",") if name not in pool]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; the sets are {', '.join(pool)}")
    sets = [pool[name] for name in args.sets.split(",")]
    if args.clutter is not None:
        if not args.clutter > 0.0:
            parser.error(f"--clutter {args.clutter:g}: false alarms per scan are > 0 here")
        sets = [replace(s, name=f"{s.name}-c{args.clutter:g}", clutter=args.clutter) for s in sets]
    minutes = args.minutes if args.minutes is not None else (1.0 if args.quick else 25.0)
    if not minutes > 0.0:
        parser.error("--minutes is > 0")
    args.minutes = minutes
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 2)
    if n_seeds < 1:
        parser.error("--seeds is >= 1")
    return args, sets, list(range(1, n_seeds + 1))


def main(argv: Sequence[str] | None = None) -> int:
    args, sets, seeds = parse(argv)
    print(f"clutter only, {args.minutes:g} min a seed, seeds {seeds}")
    print("set clutter_per_scan hours ours_false ours_per_h bound_per_h floor_false floor_per_h ours_ms_scan")
    figures = []
    for spec in sets:
        n = max(1, round(args.minutes * 60.0 * spec.radar.rate_hz))
        counts = {"ours": 0, "floor": 0}
        cpu = 0.0
        for seed in seeds:
            scans = clutter_scans(spec, seed, n)
            for name in ("ours", "floor"):
                tracker: Tracker = Ours(spec, seed) if name == "ours" else Floor(spec)
                false, seconds = confirmed_ever(tracker, scans)
                counts[name] += false
                cpu += seconds if name == "ours" else 0.0
        hours = len(seeds) * n / spec.radar.rate_hz / 3600.0
        ours_h, floor_h = counts["ours"] / hours, counts["floor"] / hours
        ms_scan = 1000.0 * cpu / (len(seeds) * n)
        print(
            f"{spec.name} {spec.clutter:g} {hours:.3f} {counts['ours']} {ours_h:.1f} "
            f"{alpha_per_hour(spec):.1f} {counts['floor']} {floor_h:.1f} {ms_scan:.2f}",
            flush=True,
        )
        figures.append(f"figure: false_tracks_per_hour_{spec.name} = {ours_h:.2f} /h")
    print("\n".join(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
