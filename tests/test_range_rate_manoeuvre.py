"""A radar's range-rate must not make a manoeuvring target's track worse (fusion/imm.py,
`RANGE_RATE_EVIDENCE`). An outside test found the opposite: drones accelerating at 0.4-0.5 g
across the beam were followed 30-60 % worse with an accurate range-rate than with none, because
the quiet model's tight prediction of the radial speed held the models' weights on it while the
target accelerated where the range-rate cannot see."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cuas_node.fusion.measurement_models import radar_model
from cuas_node.fusion.params import FusionParams, RadarSensor
from cuas_node.fusion.tracker import Scan, Tracker
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.pose import Pose, cartesian_to_spherical

RATE_HZ = 20.0
SIGMA = (0.5, math.radians(1.0), math.radians(2.0), 0.2)  # range m, az, el rad, range-rate m/s


def _flight(seed: int, seconds: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities (T, 3) of a drone flying legs between waypoints 80-300 m out,
    10-60 m up, at 8-25 m/s, turning onto each new leg at up to 6-8 m/s² (the velocity it wants
    reached within a second): the turns and speed changes a small drone makes."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / RATE_HZ

    def waypoint() -> np.ndarray:
        r, az = rng.uniform(80.0, 300.0), rng.uniform(-0.8, 0.8)
        return np.array([r * math.sin(az), r * math.cos(az), rng.uniform(10.0, 60.0)])

    pos, vel, aim = waypoint(), np.zeros(3), waypoint()
    speed, limit = rng.uniform(8.0, 25.0), rng.uniform(6.0, 8.0)
    out_p, out_v = [], []
    for _ in range(round(seconds * RATE_HZ)):
        to_go = aim - pos
        if np.linalg.norm(to_go) < 15.0:
            aim, speed = waypoint(), rng.uniform(8.0, 25.0)
            to_go = aim - pos
        a = (speed * to_go / np.linalg.norm(to_go) - vel) / 1.0
        a *= min(1.0, limit / max(float(np.linalg.norm(a)), 1e-9))
        vel = vel + a * dt
        pos = pos + vel * dt
        out_p.append(pos)
        out_v.append(vel)
    return np.array(out_p), np.array(out_v)


def _rms_error(pos: np.ndarray, vel: np.ndarray, seed: int, range_rate: bool) -> float:
    """Position RMS of the confirmed track over the last 15 s, the same noise drawn either way."""
    rng = np.random.default_rng(seed + 100)
    sensor = RadarSensor("radar", Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0)), 500.0, math.pi / 2, 0.6)
    model = radar_model(sensor, range_rate=range_rate)
    tracker = Tracker(FusionParams(), ["radar"])
    tracker.stats.seed(0, 1.0, RATE_HZ)
    sig = np.array(SIGMA if range_rate else SIGMA[:3])
    errors = []
    for k in range(pos.shape[0]):
        t = k / RATE_HZ
        r, az, el = cartesian_to_spherical(pos[k][None])
        noise = rng.normal(size=4) * np.array(SIGMA)
        z = np.array([r[0], az[0], el[0], pos[k] @ vel[k] / r[0]]) + noise
        tracker.process(Scan(model, t, z[None, : sig.size], np.diag(sig**2)[None]))
        tracker.maintain(t)
        tb = tracker.table
        firm = np.flatnonzero(tb.status == Status.CONFIRMED)
        if t >= 5.0 and firm.size:
            errors.append(float(np.min(np.linalg.norm(tb.x[firm, :3] - pos[k], axis=1))))
    assert len(errors) > 0.9 * 15.0 * RATE_HZ  # followed throughout
    return float(np.sqrt(np.mean(np.square(errors))))


@pytest.mark.parametrize("seed", [1, 6])
def test_range_rate_does_not_make_a_manoeuvring_track_worse(seed: int) -> None:
    """The two flights (of seeds 1-8) where the range-rate had made the track 12 % and 24 % worse
    than the same plots without it (2.11 against 1.89 m, 2.15 against 1.74 m); now within 2 %."""
    pos, vel = _flight(seed)
    with_rate = _rms_error(pos, vel, seed, range_rate=True)
    without = _rms_error(pos, vel, seed, range_rate=False)
    assert with_rate <= 1.05 * without, (with_rate, without)
