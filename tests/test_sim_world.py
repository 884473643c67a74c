"""The simulator's target kinematics (drivers/sim/world.py): every target's paths evaluated at
once (padded to the longest), so what must hold is that a target among many flies exactly as it
flies alone, and that it flies physics: present from its first waypoint to its last, velocity the
derivative of position, corners rounded within its kind's acceleration."""

from __future__ import annotations

import numpy as np

from cuas_node.drivers.sim.scenario import Scenario, TargetSpec, Waypoint, load_scenario
from cuas_node.drivers.sim.world import World


def _targets(rng: np.random.Generator, n: int) -> list[TargetSpec]:
    out = []
    for k in range(n):
        count = int(rng.integers(2, 7))
        legs = rng.uniform(12.0, 20.0, count)  # (0.45 of 12 s: no corner of these speeds cut short)
        times = np.cumsum(legs) + rng.uniform(0.0, 20.0)
        velocities = rng.uniform(-1.0, 1.0, (count, 3)) * [15.0, 15.0, 3.0]  # a drone's speeds
        points = np.cumsum(velocities * legs[:, None], axis=0) + np.array([0.0, 0.0, 100.0])
        waypoints = [
            Waypoint(t=float(t), enu_m=tuple(p)) for t, p in zip(times, points.tolist(), strict=True)
        ]
        out.append(TargetSpec(id=f"t{k}", kind="quadcopter", waypoints=waypoints))
    return out


def _scenario(targets: list[TargetSpec]) -> Scenario:
    return load_scenario("demo").model_copy(update={"targets": targets})


def test_a_target_among_many_flies_as_it_flies_alone_and_within_its_acceleration() -> None:
    rng = np.random.default_rng(3)
    targets = _targets(rng, 25)
    together = World(_scenario(targets))
    alone = [World(_scenario([t])) for t in targets]
    dt = 1e-3
    exact = [w.t for target in targets for w in target.waypoints]  # (at waypoints, first and last)
    for t in [*np.arange(0.0, 140.0, 0.23).tolist(), *exact]:
        state = together.state(t)
        present = [t_.id for t_ in targets if t_.waypoints[0].t <= t <= t_.waypoints[-1].t]
        assert state.ids == present
        for row, target_id in enumerate(state.ids):
            k = int(target_id[1:])
            single = alone[k].state(t)
            assert single.ids == [target_id]
            np.testing.assert_array_equal(single.enu[0], state.enu[row])  # bit for bit
            np.testing.assert_array_equal(single.vel[0], state.vel[row])
            later, earlier = alone[k]._evaluate(t + dt), alone[k]._evaluate(t - dt)
            if later.ids and earlier.ids:  # velocity is the derivative of position
                slope = (later.enu[0] - earlier.enu[0]) / (2.0 * dt)
                np.testing.assert_allclose(state.vel[row], slope, atol=5e-3)
                accel = np.linalg.norm(later.vel[0] - earlier.vel[0]) / (2.0 * dt)
                assert accel <= 4.0 + 1e-6  # (a quadcopter's: corners rounded, not turned)


def test_a_scenario_without_targets_has_none_at_any_time() -> None:
    world = World(_scenario([]))
    for t in (0.0, 10.0, 1e9):
        state = world.state(t)
        assert state.ids == [] and state.enu.shape == (0, 3) and state.vel.shape == (0, 3)
