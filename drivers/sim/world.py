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


class _Paths:
    """All targets' paths stacked (waypoints padded to the longest: times +inf, legs 0), so that
    an instant is evaluated in a few array operations rather than per target: at `dense-100`
    the per-target lookups were a sixth of the whole node's samples in `sim`."""

    def __init__(self, paths: list[_Path]) -> None:
        n, width = len(paths), max((len(p.times) for p in paths), default=2)
        self.times = np.full((n, width), np.inf)
        self.points = np.zeros((n, width, 3))
        self.legs = np.zeros((n, width - 1, 3))
        self.half = np.zeros((n, width))
        for k, p in enumerate(paths):
            w = len(p.times)
            self.times[k, :w], self.points[k, :w], self.legs[k, : w - 1], self.half[k, :w] = (
                p.times,
                p.points,
                p.legs,
                p.half,
            )
        self.count = np.array([len(p.times) for p in paths], dtype=np.intp)
        self.first = self.times[:, 0].copy()
        self.last = self.times[np.arange(n), self.count - 1]

    def at(self, t: float) -> tuple[npt.NDArray[np.intp], FloatArray, FloatArray]:
        """The targets present at t (indices), their positions and velocities: a straight leg's,
        or within a corner's blend (the waypoint before t first, then the one after) its."""
        rows = np.flatnonzero((t >= self.first) & (t <= self.last))
        times, half, count, each = self.times[rows], self.half[rows], self.count[rows], np.arange(rows.size)
        after = np.count_nonzero(times < t, axis=1)  # the first waypoint at or after t
        corner = np.full(rows.size, -1)
        for w in (after, after - 1):  # (the earlier waypoint wins: it is written last)
            at = np.where((w > 0) & (w < count - 1), w, 0)  # (0: no blend there, half 0)
            corner = np.where(np.abs(t - times[each, at]) < half[each, at], at, corner)
        leg = np.clip(np.count_nonzero(times <= t, axis=1) - 1, 0, count - 2)
        v = self.legs[rows, leg]
        pos = self.points[rows, leg] + v * (t - times[each, leg])[:, None]
        vel = v.copy()
        blended = np.flatnonzero(corner >= 0)
        if blended.size:
            k, w = rows[blended], corner[blended]
            h = self.half[k, w][:, None]
            v_in, v_out = self.legs[k, w - 1], self.legs[k, w]
            a = (v_out - v_in) / (2.0 * h)
            s = t - (self.times[k, w][:, None] - h)
            start = self.points[k, w] - v_in * h
            pos[blended] = start + v_in * s + 0.5 * a * s * s
            vel[blended] = v_in + a * s
        return rows, pos, vel


class World:
    def __init__(self, scenario: Scenario) -> None:
        self.targets: list[TargetSpec] = list(scenario.targets)
        self._paths = _Paths([_Path(t) for t in self.targets])
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
        rows, pos, vel = self._paths.at(t)
        specs = [self.targets[k] for k in rows.tolist()]
        return TargetState(
            ids=[spec.id for spec in specs],
            kinds=[spec.kind for spec in specs],
            rcs_m2=np.array([spec.rcs_m2 for spec in specs], dtype=np.float64),
            enu=pos.reshape(-1, 3),
            vel=vel.reshape(-1, 3),
        )
