"""Target kinematics: where every scenario target is at scenario time t, vectorised over targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.sim.scenario import Scenario, TargetSpec

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TargetState:
    """Targets present at one instant: ids, kinds, RCS, ENU positions (N,3) and velocities (N,3)."""

    ids: list[str]
    kinds: list[str]
    rcs_m2: FloatArray
    enu: FloatArray
    vel: FloatArray


class World:
    def __init__(self, scenario: Scenario) -> None:
        self.targets: list[TargetSpec] = list(scenario.targets)
        self._times = [np.array([w.t for w in t.waypoints]) for t in self.targets]
        self._points = [np.array([w.enu_m for w in t.waypoints], dtype=np.float64) for t in self.targets]

    def state(self, t: float) -> TargetState:
        ids: list[str] = []
        kinds: list[str] = []
        rcs: list[float] = []
        pos: list[FloatArray] = []
        vel: list[FloatArray] = []
        for spec, times, points in zip(self.targets, self._times, self._points, strict=True):
            if t < times[0] or t > times[-1]:
                continue
            seg = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
            span = times[seg + 1] - times[seg]
            frac = (t - times[seg]) / span
            ids.append(spec.id)
            kinds.append(spec.kind)
            rcs.append(spec.rcs_m2)
            pos.append(points[seg] + frac * (points[seg + 1] - points[seg]))
            vel.append((points[seg + 1] - points[seg]) / span)
        return TargetState(
            ids=ids,
            kinds=kinds,
            rcs_m2=np.array(rcs, dtype=np.float64),
            enu=np.array(pos, dtype=np.float64).reshape(-1, 3),
            vel=np.array(vel, dtype=np.float64).reshape(-1, 3),
        )
