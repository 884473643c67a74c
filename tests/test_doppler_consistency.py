"""A young track's covariance is honest with a range-rate radar: the range-rate row's slope with
position is the tangential velocity over the range, which a young track barely knows while the
radar measures the range-rate to a tenth of a m/s; the first-order filter took that slope as
exact and claimed metres it did not have (`fusion.models.range_rate_curvature`)."""

from __future__ import annotations

import math

import numpy as np

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.fusion.models import radar_predict, range_rate_curvature
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.kernel.pose import Pose, cartesian_to_spherical

SIGMAS = (0.15, math.radians(1.0), math.radians(2.0), 0.1)  # a TI board's detection at good SNR
RATE_HZ = 20.0


def _core() -> NodeCore:
    data = {
        "node": {"id": "t", "position": {"lat": 52.0, "lon": 4.3, "alt_m": 10.0}},
        "fusion": {"reorder_window_s": 0.0},
        "sensors": [{"kind": "ti-mmwave", "id": "ti", "port": "/dev/null", "max_range_m": 200}],
    }
    return NodeCore(core_setup(build_config(data, "test")))


def _young_track_nees(seed: int) -> list[float]:
    """Position NEES of every confirmed track in its first two seconds, against the target it
    follows: drones crossing the beam at 6-14 m/s, 50-150 m out, for 4 s."""
    rng = np.random.default_rng(seed)
    n = 8
    r0 = rng.uniform(50.0, 150.0, n)
    az0 = rng.uniform(-0.6, 0.6, n)
    start = np.column_stack([r0 * np.sin(az0), r0 * np.cos(az0), rng.uniform(15.0, 40.0, n)])
    across = np.column_stack([np.cos(az0), -np.sin(az0), np.zeros(n)]) * rng.choice([-1.0, 1.0], (n, 1))
    vel = across * rng.uniform(6.0, 14.0, (n, 1))
    core = _core()
    table = core.engine.tracker.table
    nees: list[float] = []
    for k in range(int(4 * RATE_HZ)):
        t = 1000.0 + k / RATE_HZ
        truth = start + vel * (k / RATE_HZ)
        frame = []
        for p, v in zip(truth, vel, strict=True):
            if rng.random() > 0.9:
                continue
            r, az, el = cartesian_to_spherical(p)
            z = rng.normal([r, az, el, float(p @ v / r)], SIGMAS)
            frame.append(RadarDetection("ti", t, t, *map(float, z), *SIGMAS, snr_db=20.0))
        core.step(t, frame)
        slots = np.flatnonzero((table.status == Status.CONFIRMED) & (t - table.t_created <= 2.0))
        for s in slots:
            error = truth - table.x[s, :3]
            i = int(np.argmin(np.linalg.norm(error, axis=1)))
            if np.linalg.norm(error[i]) < 10.0:
                nees.append(float(error[i] @ np.linalg.solve(table.p[s, :3, :3], error[i])))
    return nees


def test_young_tracks_claim_no_more_than_they_know() -> None:
    """Position NEES (3 degrees of freedom: 3 on average when the covariance is honest) of young
    tracks over eight crossing drones, three seeds: near 3, where the first-order filter gave
    several times that."""
    nees = np.concatenate([_young_track_nees(seed) for seed in (1, 2, 3)])
    assert nees.size > 500
    assert float(np.mean(nees)) < 4.5, float(np.mean(nees))
    assert float(np.median(nees)) < 3.5, float(np.median(nees))


def test_range_rate_curvature_is_half_the_trace_with_the_numerical_hessian() -> None:
    """½ tr(A P A P) with A the Hessian of the predicted range-rate (from `radar_predict`, through
    a tilted, offset mount), by central differences, for a random covariance."""
    pose = Pose.from_angles(30.0, 5.0, -3.0, (1.0, 2.0, 3.0))
    x = np.array([40.0, 120.0, 30.0, 5.0, -7.0, 1.0])
    step = 1e-3
    eye = np.eye(6) * step
    hessian = np.zeros((6, 6))
    for i in range(6):
        for j in range(6):
            corners = [x + si * eye[i] + sj * eye[j] for si in (1, -1) for sj in (1, -1)]
            rdot = radar_predict(np.array(corners), pose)[0][:, 3]
            hessian[i, j] = (rdot[0] - rdot[1] - rdot[2] + rdot[3]) / (4 * step * step)
    root = np.random.default_rng(1).normal(size=(6, 6))
    p = root @ root.T
    expected = 0.5 * np.trace(hessian @ p @ hessian @ p)
    assert math.isclose(float(range_rate_curvature(x[None], p[None], pose)[0]), expected, rel_tol=1e-4)
