"""Structure-of-arrays track table: every track's state lives in preallocated numpy arrays.

Why SoA: the hot path (predict, gate, update) is then a handful of batched numpy calls whatever
the number of tracks, and the memory of the node is fixed by `capacity` rather than by traffic.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt

from node.fusion.models import STATE_DIM


class Status(IntEnum):
    FREE = 0
    TENTATIVE = 1
    CONFIRMED = 2
    COASTING = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class TrackTable:
    """Fixed-capacity arrays; a slot is in use when its status is not FREE."""

    def __init__(self, capacity: int, n_sensors: int = 64) -> None:
        self.capacity = capacity
        self.x = np.zeros((capacity, STATE_DIM))
        self.p = np.zeros((capacity, STATE_DIM, STATE_DIM))
        self.status = np.zeros(capacity, dtype=np.int8)
        self.number = np.zeros(capacity, dtype=np.int64)  # the public id's running number
        self.t_state = np.zeros(capacity)  # time the state estimate refers to
        self.t_update = np.zeros(capacity)  # last measurement update
        self.t_created = np.zeros(capacity)
        self.hits = np.zeros(capacity, dtype=np.uint32)  # M-of-N history, newest in bit 0
        self.updates = np.zeros(capacity, dtype=np.int64)
        self.sensor_mask = np.zeros(capacity, dtype=np.uint64)  # which sensors contributed
        self.changed = np.zeros(capacity, dtype=bool)
        self._next_number = 1

    def active(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.status != Status.FREE)

    def free_slots(self, count: int) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.status == Status.FREE)[:count]

    def allocate(
        self, x: npt.NDArray[np.float64], p: npt.NDArray[np.float64], t: float, sensor_bit: int
    ) -> npt.NDArray[np.intp]:
        """Start tentative tracks in free slots; returns the slots used (may be fewer than asked)."""
        slots = self.free_slots(x.shape[0])
        n = slots.shape[0]
        self.x[slots] = x[:n]
        self.p[slots] = p[:n]
        self.status[slots] = Status.TENTATIVE
        self.number[slots] = np.arange(self._next_number, self._next_number + n)
        self._next_number += n
        self.t_state[slots] = t
        self.t_update[slots] = t
        self.t_created[slots] = t
        self.hits[slots] = 1
        self.updates[slots] = 1
        self.sensor_mask[slots] = np.uint64(1 << sensor_bit)
        self.changed[slots] = True
        return slots

    def release(self, slots: npt.NDArray[np.intp]) -> None:
        self.status[slots] = Status.FREE
        self.changed[slots] = False
