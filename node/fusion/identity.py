"""Remote ID identity: which physical track is the drone that says "I am X, here"?

A report that falls inside a track's gate updates that track (the tracker's own association), and
the track then carries the identity. Whether that is believable depends on the physical sensors:
- consistent: a radar/acoustic sensor supports the track and the reported position agrees;
- unconfirmed: nothing physical supports it, though the claimed position is (or is not) in view;
- inconsistent: a physical track moves like the broadcaster (same velocity) but the reported
  position is off by more than its accuracy allows, for several reports in a row: a spoofer, or
  broken GNSS. The phantom track made of the false positions is then withdrawn and the identity is
  shown on the physical track, flagged.
Bindings are one-to-one and need `confirm_reports` agreeing reports to switch (hysteresis).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.tracks import Status, TrackTable
from cuas_node.kernel.measurement import RemoteIdReport
from cuas_node.kernel.reports import RemoteIdBinding

FloatArray = npt.NDArray[np.float64]
_SUPPORT_WINDOW_S = 3.0


NEW_WINDOW_S = 60.0  # broadcasters first heard within this long count as new (spoofing)


@dataclass
class IdentityRecord:
    report: RemoteIdReport
    reported_enu: FloatArray
    reported_vel: FloatArray | None
    last_seen: float
    strict_number: int | None = None  # track updated by the reports themselves
    loose_number: int | None = None  # physical track the reports disagree with (inconsistent)
    candidate: int | None = None  # a track the binding may move to, and how many reports agree
    candidate_count: int = 0
    misses: int = 0  # reports in a row that did not land on the bound track
    support_count: int = 0  # reports in a row whose own track was physically supported
    landed_count: int = 0  # ... in a row that also landed on it, under this binding (`claims.earned`)
    supported: bool = False  # the last report landed on a track a physical sensor sees


class IdentityBinder:
    """One binding per broadcaster, held with hysteresis both ways: made, moved or released only
    after `confirm_reports` reports in a row agree, and forgotten when the broadcaster has been
    silent for `stale_s`. A single report that falls elsewhere (noise, a clutter track near the
    claimed position) changes nothing, so the identity does not flicker on and off a track."""

    def __init__(
        self,
        loose_gate_m: float = 150.0,
        speed_gate_mps: float = 4.0,
        confirm_reports: int = 3,
        stale_s: float = 15.0,
    ) -> None:
        self.loose_gate_m = loose_gate_m
        self.speed_gate_mps = speed_gate_mps
        self.confirm_reports = confirm_reports
        self.stale_s = stale_s
        self.records: dict[str, IdentityRecord] = {}
        # Track number -> the broadcaster bound to it (strictly or loosely): bindings are one to
        # one, and a flood of broadcasters must not make every lookup scan them all.
        self._owner: dict[int, str] = {}
        self.arrivals: deque[float] = deque()  # when each broadcaster was first heard (spoofing)

    def initiate_allowed(self, uas_id: str) -> bool:
        """No new track from reports already known to be false."""
        record = self.records.get(uas_id)
        return record is None or record.loose_number is None

    def _slot_of(self, table: TrackTable, number: int | None) -> int | None:
        if number is None:
            return None
        hit = np.flatnonzero((table.number == number) & (table.status != Status.FREE))
        return int(hit[0]) if hit.size else None

    def _taken(self, number: int, uas_id: str) -> bool:
        return self._owner.get(number, uas_id) != uas_id

    def _reindex(self, record: IdentityRecord, before: tuple[int | None, int | None]) -> None:
        uas_id = record.report.uas_id
        for number in before:
            if number is not None and self._owner.get(number) == uas_id:
                del self._owner[number]
        for number in (record.strict_number, record.loose_number):
            if number is not None:
                self._owner[number] = uas_id

    def new_broadcasters(self, t: float) -> int:
        """How many broadcasters were first heard in the last `NEW_WINDOW_S` seconds."""
        while self.arrivals and self.arrivals[0] < t - NEW_WINDOW_S:
            self.arrivals.popleft()
        return len(self.arrivals)

    def on_report(
        self,
        table: TrackTable,
        report: RemoteIdReport,
        enu: FloatArray,
        vel: FloatArray | None,
        slot: int,
        t: float,
        claimed: Callable[[int], bool] | None = None,
    ) -> list[int]:
        """Record one report (and the slot the tracker fused it into, −1 if none); returns phantom
        slots to withdraw. `claimed(slot)`: whether a claim holds that track (`claims`): the
        radar lost it near where the broadcaster says it is, so its reports are judged neither
        phantom nor a neighbour's (a drone landing 80 m from a hovering one took its ID)."""
        record = self.records.get(report.uas_id)
        if record is None:
            record = self.records[report.uas_id] = IdentityRecord(report, enu, vel, t)
            self.arrivals.append(t)
        before = (record.strict_number, record.loose_number)
        phantoms = self._on_report(table, record, report, enu, vel, slot, t, claimed)
        self._reindex(record, before)
        return phantoms

    def _on_report(
        self,
        table: TrackTable,
        record: IdentityRecord,
        report: RemoteIdReport,
        enu: FloatArray,
        vel: FloatArray | None,
        slot: int,
        t: float,
        claimed: Callable[[int], bool] | None,
    ) -> list[int]:
        record.report, record.reported_enu, record.reported_vel, record.last_seen = report, enu, vel, t
        self._strict(table, record, slot)
        own = self._slot_of(table, record.strict_number)
        supported = (
            own is not None
            and table.status[own] in (Status.CONFIRMED, Status.COASTING)
            and t - table.t_physical[own] < _SUPPORT_WINDOW_S
        )
        record.supported = supported
        if supported:
            record.support_count += 1
            record.landed_count = record.landed_count + 1 if slot == own else 0
            if record.loose_number is None or record.support_count >= self.confirm_reports:
                # Consistent: the reports are on a physically seen track (for long enough to undo
                # an earlier verdict of inconsistency).
                record.loose_number, record.candidate, record.candidate_count = None, None, 0
            return []
        record.support_count = record.landed_count = 0
        if own is not None and claimed is not None and claimed(own):
            return []
        self._loose_candidate(table, record, t)
        if record.loose_number is not None and own is not None:
            record.strict_number = None
            return [own]  # the reports' own track is a phantom: the physical track carries the ID
        return []

    def _strict(self, table: TrackTable, record: IdentityRecord, slot: int) -> None:
        """The track the reports themselves land on. A first binding, or the bound track gone,
        binds at once; moving to another track, or letting go when reports keep missing the bound
        one, needs `confirm_reports` reports in a row."""
        number = int(table.number[slot]) if slot >= 0 else None
        if number is not None and self._taken(number, record.report.uas_id):
            number = None
        bound = record.strict_number
        if bound is None or self._slot_of(table, bound) is None:
            record.strict_number, record.misses, record.landed_count = number, 0, 0
            return
        if number == bound:
            record.misses = 0
            return
        record.misses += 1
        if record.misses >= self.confirm_reports:
            record.strict_number, record.misses, record.landed_count = number, 0, 0

    def _loose_candidate(self, table: TrackTable, record: IdentityRecord, t: float) -> None:
        tb = table
        firm = (tb.status == Status.CONFIRMED) | (tb.status == Status.COASTING)
        physical = firm & (t - tb.t_physical < _SUPPORT_WINDOW_S)
        slots = np.flatnonzero(physical)
        slots = np.array(
            [s for s in slots if not self._taken(int(tb.number[s]), record.report.uas_id)], dtype=int
        )
        best = None
        if slots.size:
            dist = np.linalg.norm(tb.x[slots, :3] - record.reported_enu, axis=1)
            ok = dist < self.loose_gate_m
            if record.reported_vel is not None:
                ok &= np.linalg.norm(tb.x[slots, 3:] - record.reported_vel, axis=1) < self.speed_gate_mps
            if ok.any():
                best = int(tb.number[slots[ok][np.argmin(dist[ok])]])
        if record.loose_number is not None and self._slot_of(table, record.loose_number) is None:
            record.loose_number = None  # the physical track is gone
        if best == record.loose_number:
            record.candidate, record.candidate_count = None, 0
            return
        # Another track (or none) fits better: move (or let go) only when reports keep saying so.
        record.candidate_count = record.candidate_count + 1 if best == record.candidate else 1
        record.candidate = best
        if record.candidate_count >= self.confirm_reports:
            record.loose_number = best
            record.candidate, record.candidate_count = None, 0

    def forget_stale(self, t: float) -> None:
        self.new_broadcasters(t)  # (else only health trims them: `track`, `replay` kept one each)
        for uas_id in [u for u, r in self.records.items() if t - r.last_seen > self.stale_s]:
            record = self.records.pop(uas_id)
            for number in (record.strict_number, record.loose_number):
                if number is not None and self._owner.get(number) == uas_id:
                    del self._owner[number]

    def describe(
        self,
        number: int,
        table: TrackTable,
        slot: int,
        t: float,
        in_coverage: Callable[[FloatArray], bool],
        reported_geodetic: Callable[[FloatArray], tuple[float, float, float]],
    ) -> RemoteIdBinding | None:
        """The identity bound to a track, or None when none is."""
        owner = self._owner.get(number)
        record = self.records.get(owner) if owner is not None else None
        if record is not None:
            if number == record.loose_number:
                consistency = "inconsistent"
            else:
                supported = t - table.t_physical[slot] < _SUPPORT_WINDOW_S
                consistency = "consistent" if supported else "unconfirmed"
            r = record.report
            lat, lon, alt = reported_geodetic(record.reported_enu)
            return RemoteIdBinding(
                uas_id=r.uas_id,
                consistency=consistency,
                last_seen=record.last_seen,
                reported_lat=lat,
                reported_lon=lon,
                reported_alt_m=alt,
                offset_m=float(np.linalg.norm(table.x[slot, :3] - record.reported_enu)),
                in_coverage=in_coverage(record.reported_enu),
                id_type=r.id_type,
                ua_type=r.ua_type,
                operator_id=r.operator_id,
                serial_number=r.serial_number,
                registration_id=r.registration_id,
                operator_lat=r.operator_lat,
                operator_lon=r.operator_lon,
                carrier=r.carrier,
                rssi_dbm=r.rssi_dbm,
            )
        return None
