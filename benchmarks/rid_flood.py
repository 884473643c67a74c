"""A Remote ID spoofing flood: what it costs the fusion step, and whether a real target still
confirms on time.

A radar sees one hovering drone (10 Hz); from the start, N fake broadcasters (1 Hz each, every
report repeated on two carriers, spread over each second) fill the air. The node's core step
(`NodeCore.step`, the one `run`, `replay` and `eval` drive) runs every 0.1 s of scenario time;
the CPU time of each step is measured. Reported as ratios to the same run without fakes, in one
process, so the figures compare across machines.

Run: `.venv/bin/python benchmarks/rid_flood.py [--broadcasters 1000] [--seconds 10]`
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

import numpy as np

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import AnyMeasurement, RadarDetection, RemoteIdReport
from cuas_node.kernel.pose import cartesian_to_spherical

ORIGIN = LocalFrame(52.0, 4.3, 10.0)
TARGET = np.array([40.0, 120.0, 30.0])


def _core() -> NodeCore:
    data: dict[str, Any] = {
        "node": {"id": "bench", "position": {"lat": ORIGIN.lat, "lon": ORIGIN.lon, "alt_m": ORIGIN.alt_m}},
        "sensors": [
            {"kind": "ti-mmwave", "id": "radar", "port": "/dev/null", "max_range_m": 300, "fov_az_deg": 80},
            {"kind": "remoteid", "id": "rid", "port": "/dev/null"},
        ],
        "fusion": {"reorder_window_s": 0.0},
    }
    return NodeCore(core_setup(build_config(data, "bench")))


def run(broadcasters: int, seconds: float, arrives_s: float) -> tuple[list[float], float | None]:
    """Step CPU times (s) and how long after its arrival the real target was confirmed."""
    rng = np.random.default_rng(3)
    core = _core()
    spots = rng.uniform([-1500.0, -1500.0, 20.0], [1500.0, 1500.0, 120.0], size=(broadcasters, 3))
    geo = [ORIGIN.to_geodetic(p) for p in spots]
    cpu: list[float] = []
    confirmed = None
    s = (0.2, math.radians(1.0), math.radians(1.5), 0.1)
    for k in range(int(seconds * 10)):
        t = 1000.0 + k * 0.1
        batch: list[AnyMeasurement] = []
        present = k * 0.1 >= arrives_s - 1e-9
        if present:
            r, az, el = cartesian_to_spherical(TARGET)
            z = rng.normal([r, az, el, 0.0], s)
            batch.append(RadarDetection("radar", t, 0.0, *map(float, z), *s, snr_db=20.0, n_points=3))
        for n in range(k % 10, broadcasters, 10):
            lat, lon, alt = geo[n]
            fake = RemoteIdReport(
                "rid", t, 0.0, uas_id=f"FAKE{n:06d}", lat=float(lat), lon=float(lon),
                alt_geo_m=float(alt), vel_enu_mps=(0.0, 0.0, 0.0), h_accuracy_m=3.0,
                v_accuracy_m=4.0, speed_accuracy_mps=0.3, ua_type="helicopter_or_multirotor",
            )  # fmt: skip
            batch += [fake, fake]
        started = time.process_time()
        core.step(t, batch)
        cpu.append(time.process_time() - started)
        firm = (tr.status == "confirmed" for tr in core.tracks_now() if tr.remote_id is None)
        if present and confirmed is None and any(firm):
            confirmed = k * 0.1 - arrives_s
    return cpu, confirmed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broadcasters", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    arrives = args.seconds / 2.0
    clean, clean_confirm = run(0, args.seconds, arrives)
    flood, flood_confirm = run(args.broadcasters, args.seconds, arrives)
    p95 = statistics.quantiles(flood, n=20)[18]
    print(f"figure: rid_flood_step_mean = {statistics.mean(flood) * 1000:.2f} ms")
    print(f"figure: rid_flood_step_p95 = {p95 * 1000:.2f} ms")
    print(f"figure: rid_flood_step_vs_clean = {statistics.mean(flood) / statistics.mean(clean):.1f} x")
    print(f"figure: rid_flood_reports_per_s = {2 * args.broadcasters} reports/s")
    late = float("nan") if flood_confirm is None or clean_confirm is None else flood_confirm - clean_confirm
    print(f"figure: rid_flood_confirm_delay = {late:.2f} s")


if __name__ == "__main__":
    main()
