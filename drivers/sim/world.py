"""Target kinematics: where every scenario target is at scenario time t.

Targets fly straight between waypoints, and round each corner with a constant acceleration no
larger than their kind allows: real quadcopters do not change velocity instantly, and a
simulator that made them do so would test the tracker against impossible physics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.sim.scenario import Scenario, TargetSpec

FloatArray = npt.NDArray[np.float64]
_RECENT_INSTANTS = 16  # instants whose state is kept (`World.state`)
MAX_ACCEL_MPS2 = {"quadcopter": 4.0, "fixed-wing": 3.0, "bird": 6.0, "aircraft": 2.0}


@dataclass(frozen=True)
class TargetState:
    """Targets present at one instant: ids, kinds, RCS, ENU positions (N,3) and velocities (N,3)."""

    ids: list[str]
    kinds: list[str]
    rcs_m2: FloatArray
    enu: FloatArray
    vel: FloatArray


class _Path:
    """One target's trajectory: straight legs joined by constant-acceleration blends."""

    def __init__(self, spec: TargetSpec) -> None:
        self.times = np.array([w.t for w in spec.waypoints], dtype=np.float64)
        self.points = np.array([w.enu_m for w in spec.waypoints], dtype=np.float64)
        self.legs = np.diff(self.points, axis=0) / np.diff(self.times)[:, None]  # velocity of each leg
        accel = spec.max_accel_mps2 or MAX_ACCEL_MPS2.get(spec.kind, 4.0)
        durations = np.diff(self.times)
        # Blend half-width at each inner waypoint: long enough to keep |a| ≤ accel, short enough
        # to stay within both neighbouring legs.
        self.half = np.zeros(len(self.times))
        for i in range(1, len(self.times) - 1):
            dv = float(np.linalg.norm(self.legs[i] - self.legs[i - 1]))
            self.half[i] = min(dv / accel / 2.0, 0.45 * durations[i - 1], 0.45 * durations[i])

    def at(self, t: float) -> tuple[FloatArray, FloatArray] | None:
        if t < self.times[0] or t > self.times[-1]:
            return None
        i = int(np.searchsorted(self.times, t))  # index of the first waypoint at or after t
        for w in (i - 1, i):
            if 0 < w < len(self.times) - 1 and abs(t - self.times[w]) < self.half[w]:
                return self._blend(w, t)
        leg = int(np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.legs) - 1))
        v = self.legs[leg]
        return self.points[leg] + v * (t - self.times[leg]), v.copy()

    def _blend(self, w: int, t: float) -> tuple[FloatArray, FloatArray]:
        tau = 2.0 * self.half[w]
        v_in, v_out = self.legs[w - 1], self.legs[w]
        a = (v_out - v_in) / tau
        s = t - (self.times[w] - self.half[w])
        start = self.points[w] - v_in * self.half[w]
        return start + v_in * s + 0.5 * a * s * s, v_in + a * s


class World:
    def __init__(self, scenario: Scenario) -> None:
        self.targets: list[TargetSpec] = list(scenario.targets)
        self._paths = [_Path(t) for t in self.targets]
        # Each sensor's thread asks the state at the same instants (k / rate): the last few are
        # kept, read-only, so that a scenario of hundreds of targets is evaluated once an instant.
        self._recent: dict[float, TargetState] = {}
        self._lock = threading.Lock()

    def state(self, t: float) -> TargetState:
        """The targets present at scenario time t (shared: its arrays are read-only)."""
        with self._lock:
            known = self._recent.get(t)
        if known is not None:
            return known
        state = self._evaluate(t)
        for array in (state.rcs_m2, state.enu, state.vel):
            array.flags.writeable = False
        with self._lock:
            self._recent[t] = state
            while len(self._recent) > _RECENT_INSTANTS:
                del self._recent[next(iter(self._recent))]  # the oldest asked
        return state

    def _evaluate(self, t: float) -> TargetState:
        ids: list[str] = []
        kinds: list[str] = []
        rcs: list[float] = []
        pos: list[FloatArray] = []
        vel: list[FloatArray] = []
        for spec, path in zip(self.targets, self._paths, strict=True):
            at = path.at(t)
            if at is None:
                continue
            ids.append(spec.id)
            kinds.append(spec.kind)
            rcs.append(spec.rcs_m2)
            pos.append(at[0])
            vel.append(at[1])
        return TargetState(
            ids=ids,
            kinds=kinds,
            rcs_m2=np.array(rcs, dtype=np.float64),
            enu=np.array(pos, dtype=np.float64).reshape(-1, 3),
            vel=np.array(vel, dtype=np.float64).reshape(-1, 3),
        )
