"""A radar site for the reflector tests: a 2.5 km plot extractor looking north, four fixed
reflectors that flicker, uniform false alarms, and the measurement lines a survey or a live run
gives (tests/test_reflectors.py, tests/test_reflector_learning.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cuas_node.calibration.reflector_learning import Survey, learn_reflectors
from cuas_node.kernel.measurement import EmptyRadarScan, RadarDetection
from cuas_node.publish import wire

RATE_HZ = 10.0
SIGMA = np.array([2.0, math.radians(1.0), math.radians(1.0)])
RANGE_M, FOV_AZ, FOV_EL = (200.0, 2500.0), math.radians(60.0), math.radians(20.0)
COVERAGE = (RANGE_M[0], RANGE_M[1], FOV_AZ, FOV_EL)
# range m, azimuth, elevation (the radar looks north), plots per scan: a mast to a faint tree.
REFLECTORS = np.array(
    [
        [650.0, -0.40, 0.010, 0.9],
        [1200.0, 0.30, 0.005, 0.5],
        [1800.0, -0.10, 0.004, 0.25],
        [2200.0, 0.60, 0.003, 0.1],
    ]
)
T0 = 1_750_000_000.0
TOML = f"""
[node]
id = "site"
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
rate_hz = {RATE_HZ}
false_alarms_per_scan = 5
"""


def clutter(rng: np.random.Generator, mean: float, near_bias: float = 0.0) -> np.ndarray:
    """Uniform false alarms; with `near_bias`, that share of them in the nearest fifth of the range."""
    m = int(rng.poisson(mean))
    near = rng.random(m) < near_bias
    top = np.where(near, RANGE_M[0] + 0.2 * (RANGE_M[1] - RANGE_M[0]), RANGE_M[1])
    return np.column_stack(
        [rng.uniform(RANGE_M[0], top), rng.uniform(-FOV_AZ, FOV_AZ, m), rng.uniform(-FOV_EL, FOV_EL, m)]
    )


def reflector_plots(rng: np.random.Generator) -> np.ndarray:
    seen = rng.random(len(REFLECTORS)) < REFLECTORS[:, 3]
    return REFLECTORS[seen, :3] + rng.normal(0.0, 1.0, (int(seen.sum()), 3)) * SIGMA


def at(position: Sequence[float]) -> np.ndarray:
    east, north, up = position
    r = math.sqrt(east**2 + north**2 + up**2)
    return np.array([[r, math.atan2(east, north), math.asin(up / r)]])


Targets = Callable[[int, np.random.Generator], np.ndarray]


def site_scans(
    seconds: float,
    seed: int,
    *,
    reflectors: bool = True,
    drones: Targets | None = None,
    false_alarms: float = 5.0,
) -> list[np.ndarray]:
    """Each scan's plots (range, az, el). `drones(k, rng)`: the targets' plots of scan k."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(round(seconds * RATE_HZ)):
        parts = [clutter(rng, false_alarms)]
        if reflectors:
            parts.append(reflector_plots(rng))
        if drones is not None:
            parts.append(drones(k, rng))
        out.append(np.concatenate(parts))
    return out


def measurement_lines(scans: Sequence[np.ndarray], *, empty_scans: bool = True) -> list[str]:
    """The measurement JSON lines of these scans (10 Hz from T0); `empty_scans`: an
    `EmptyRadarScan` line for each scan without plots, as the node's drivers send."""
    out = []
    for k, z in enumerate(scans):
        t = T0 + k / RATE_HZ
        if not z.shape[0] and empty_scans:
            out.append(wire.dumps(wire.measurement_record(EmptyRadarScan("surv", t, t + 0.01))))
        for r, az, el in z.tolist():
            m = RadarDetection("surv", t, t + 0.01, r, az, el, None, 2.0, SIGMA[1], SIGMA[2], None, 15.0)
            out.append(wire.dumps(wire.measurement_record(m)))
    return out


def write(path: Path, text: Sequence[str]) -> Path:
    path.write_text("\n".join(text) + "\n")
    return path


def enu(z: np.ndarray) -> np.ndarray:
    r, az, el = z[:, 0], z[:, 1], z[:, 2]
    return np.column_stack([r * np.cos(el) * np.sin(az), r * np.cos(el) * np.cos(az), r * np.sin(el)])


def learn(survey: Sequence[np.ndarray]) -> Survey:
    """What a survey of these scans (one after another, none missing) learns."""
    z = np.concatenate(survey)
    scan_of = np.repeat(np.arange(len(survey)), [s.shape[0] for s in survey])
    return learn_reflectors(z, scan_of, len(survey), SIGMA, COVERAGE)


def first_confirmed(out: str) -> dict[str, tuple[float, np.ndarray]]:
    """Each confirmed track's time and ENU position when it first confirmed, from `track`'s
    output lines."""
    first: dict[str, tuple[float, np.ndarray]] = {}
    for line in out.splitlines():
        doc = json.loads(line)
        for tr in doc.get("tracks", []) if doc["type"] == "tracks" else []:
            if tr["status"] == "confirmed":
                first.setdefault(tr["id"], (doc["t"], np.array(tr["enu_m"])))
    return first
