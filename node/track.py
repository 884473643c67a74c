"""The loop of `cuas-node track`: measurement JSON lines through the node's fusion, no drivers.

The input is what `replay` prints: a `{"type":"measurement","kind":...}` line per measurement,
parsed by `cuas_node.measurement_lines`; every other line is ignored. The output is replay's: a
`tracks` line per tracks message and an `alert` line per zone alert (`cuas_node.step_lines`, with
replay's session `replay_loop.SESSION`). Both run the same core step (`NodeCore`, built by
`assembly.core_setup` from the config) on virtual time, as fast as the CPU allows.

Virtual time is replay's, rebuilt from the lines (`ArrivalGrid`): the lines are in arrival order,
each arriving at its `t_receive` on the node's receive clock; the core steps every 50 ms of that
clock (`replay_loop.CYCLE_S`, the runtime's cycle) with the measurements that arrived in the
cycle, at the cycle's end converted to UTC. So `track` on replay's measurement lines gives
replay's tracks lines, given the same config, within the limits of what the lines say
(docs/track.md). The command around this loop (arguments, config, files, stderr) is
`cuas_node.track_cli`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from cuas_node.assembly import core_setup
from cuas_node.config import Config
from cuas_node.core.step import NodeCore
from cuas_node.fusion.clutter_profile import ProfileSummary
from cuas_node.fusion.frame_stamps import FrameRuns
from cuas_node.fusion.params import (
    BearingSensor,
    PositionReceiver,
    PresenceSensor,
    RadarSensor,
    RemoteIdReceiver,
)
from cuas_node.kernel.clock import STEP_S
from cuas_node.kernel.measurement import (
    NODE_STAMPED,
    AcousticBearing,
    AnyMeasurement,
    EmptyRadarScan,
    GpsFix,
    RadarDetection,
    RemoteIdReport,
    RfPresence,
)
from cuas_node.measurement_lines import Rejected, UnknownKind, parse_line
from cuas_node.replay_loop import CYCLE_S, SESSION
from cuas_node.step_lines import StepLines

ORIGIN_WAIT_S = 10.0
"""Receive-clock seconds to wait for a node-stamped measurement (see `ArrivalGrid`)."""

ROLE = {
    RadarDetection: RadarSensor,
    EmptyRadarScan: RadarSensor,
    AcousticBearing: BearingSensor,
    RemoteIdReport: RemoteIdReceiver,
    RfPresence: PresenceSensor,
    GpsFix: PositionReceiver,
}
"""The fusion role (`fusion.params`) a configured sensor must have for each measurement kind."""

Cycle = tuple[float, list[AnyMeasurement]]


class ArrivalGrid:
    """Measurements in arrival order → core-step inputs `(t, batch)` on replay's cycle grid.

    Cycle k takes the measurements whose `t_receive` lies in ((k-1)·50 ms, k·50 ms] (the first
    cycle of a replay also takes `t_receive` 0: its first packet); one whose `t_receive` lies
    before the open cycle (out of order) joins the open cycle; one more than a clock step from
    it waits for the next (`_arrive`). Empty cycles between measurements are stepped too (tracks
    coast, rate-limited messages go out), none before the first.

    A cycle's time is `origin + k·50 ms` in UTC, where `origin` is the receive clock's zero in UTC:
    the largest `t_capture - t_receive` of the node-stamped kinds (`NODE_STAMPED`), which for
    replay's lines is exactly the time of the recording's first packet. Cycles wait (in memory)
    until one is seen; if none comes within `ORIGIN_WAIT_S` of receive time (a node with only GPS
    and Remote ID), the largest over every kind is taken. Times are handled in whole microseconds,
    as replay computes its cycles, so they match replay's to the bit.

    Empty cycles are skipped while `idle()` says one would change nothing (no track left to coast
    or delete, nothing to publish): a log with a day's gap between two lines is then two cycles
    apart, not 1.7 million.
    """

    def __init__(
        self,
        cycle_s: float = CYCLE_S,
        origin_wait_s: float = ORIGIN_WAIT_S,
        idle: Callable[[], bool] | None = None,
    ) -> None:
        self.idle = idle
        self.cycle_us = round(cycle_s * 1e6)
        self.wait_cycles = math.ceil(origin_wait_s / cycle_s)
        self.step_cycles = math.ceil(STEP_S / cycle_s)
        self.origin_us: int | None = None
        self.fallback_us: int | None = None
        self.open: int | None = None  # the cycle taking arrivals
        self.batch: list[AnyMeasurement] = []
        self.closed: deque[tuple[int, list[AnyMeasurement]]] = deque()  # waiting for the origin
        self.stepped: int | None = None  # the last cycle handed out
        self._held: list[tuple[int, AnyMeasurement]] = []  # lines far from the open cycle (`_arrive`)

    def cycle_of(self, receive_us: int) -> int:
        k = -(-receive_us // self.cycle_us)
        return max(k, 1) if receive_us >= 0 else k

    def add(self, m: AnyMeasurement) -> Iterator[Cycle]:
        """Take one arrival; return the cycles it completes (those before its own). The arrival
        is placed as the iterator is consumed, which must be before the next call (lazily: a long
        gap between lines is many empty cycles, and whether to skip them depends on each)."""
        return self._arrive(self.cycle_of(round(m.t_receive * 1e6)), m)

    def _arrive(self, k: int, m: AnyMeasurement) -> Iterator[Cycle]:
        """Lines more than a clock step (`kernel.clock.STEP_S`) from the open cycle are held until
        a line of another cycle says what they were (a radar frame's lines share a cycle: they are
        judged together). Ahead of the open cycle: if the log goes on from there, a gap (sensors
        were silent; a sparse log is all gaps); if it comes back, lines off on their own (a
        garbled stamp). Behind it: if the log comes back to the open cycle, lines written late;
        if it goes on back there for more than a clock step, the log's clock stepped back
        (`_stepped_back`). Lines off on their own or late join the open cycle, as a line slightly
        out of order does, their stamps moving no origin; fusion judges their capture times."""
        held, step = self._held, self.step_cycles
        if held and k != held[-1][0]:
            assert self.open is not None
            first = held[0][0]
            if first > self.open:
                jumped = k >= first - step
            elif k >= self.open - step:
                jumped = False
            elif k - first > step:
                jumped = True
            else:
                held.append((k, m))
                return
            yield from self._release_held(jumped)
        elif held:
            held.append((k, m))
            return
        if self.open is not None and abs(k - self.open) > step:
            self._held.append((k, m))
            return
        yield from self._take(k, m)

    def _release_held(self, jumped: bool) -> Iterator[Cycle]:
        held, self._held = self._held, []
        if not jumped:
            self.batch += [m for _, m in held]
            return
        for k, m in held:
            yield from self._take(k, m)

    def _take(self, k: int, m: AnyMeasurement) -> Iterator[Cycle]:
        """Place a line in its cycle (the origin learns from it; a line off on its own is not
        taken, so its stamps move no origin)."""
        offset = round(m.t_capture * 1e6) - round(m.t_receive * 1e6)
        if isinstance(m, NODE_STAMPED):
            self.origin_us = offset if self.origin_us is None else max(self.origin_us, offset)
        elif self.origin_us is None:
            self.fallback_us = offset if self.fallback_us is None else max(self.fallback_us, offset)
        if self.open is not None and k < self.open - self.step_cycles:
            yield from self._stepped_back(k, m)
            return
        if self.open is None:
            self.open, self.stepped = k, k - 1
        elif k > self.open:
            self.closed.append((self.open, self.batch))
            self.open, self.batch = k, []
        self.batch.append(m)
        yield from self._ready(self.open - 1, final=False)

    def _stepped_back(self, k: int, m: AnyMeasurement) -> Iterator[Cycle]:
        """The receive clock went back by more than a clock step, and stayed back: a log kept on a
        wall clock that NTP corrected. Joining the open cycle would hold every later line there
        until the end of input; instead what is held goes out, and cycles go on from the new
        time: the core step sees its clock step back, as the node's would (`NodeCore`)."""
        assert self.open is not None
        self.closed.append((self.open, self.batch))
        self.batch = []
        yield from self._ready(self.open, final=True)
        self.open, self.stepped, self.batch = k, k - 1, [m]

    def end(self) -> Iterator[Cycle]:
        """The end of input: every cycle still held, the last one included. Lines held by
        `_arrive` ahead of the open cycle end the log after a gap; behind it, they were late."""
        if self._held:
            assert self.open is not None
            yield from self._release_held(jumped=self._held[0][0] > self.open)
        if self.open is None:
            return
        self.closed.append((self.open, self.batch))
        self.batch = []
        yield from self._ready(self.open, final=True)

    def _ready(self, through: int, final: bool) -> Iterator[Cycle]:
        if self.origin_us is None:
            waited = self.stepped is not None and through - self.stepped >= self.wait_cycles
            if not (final or waited) or self.fallback_us is None:
                return
            self.origin_us = self.fallback_us
        assert self.stepped is not None
        while self.stepped < through:
            k = self.stepped + 1
            batch: list[AnyMeasurement] = []
            if self.closed and self.closed[0][0] == k:
                batch = self.closed.popleft()[1]
            elif self.idle is not None and self.idle():  # nothing would happen until the next arrival
                self.stepped = min(self.closed[0][0], through + 1) - 1 if self.closed else through
                continue
            self.stepped = k
            yield (self.origin_us + k * self.cycle_us) / 1e6, batch


@dataclasses.dataclass
class TrackStats:
    lines: int = 0
    measurements: int = 0
    """Handed to the core step (fused)."""
    empty_scans: int = 0
    """Of those, `EmptyRadarScan` lines: radar frames that saw nothing (looks, not things seen)."""
    malformed: Counter[str] = dataclasses.field(default_factory=Counter)
    """Malformed lines by reason (`measurement_lines` constants)."""
    unknown_kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    unconfigured: Counter[str] = dataclasses.field(default_factory=Counter)
    """Measurements of sensors not in the config (or disabled), by sensor id."""
    configured: list[str] = dataclasses.field(default_factory=list)
    """The enabled sensors' ids, for the summary's line on `unconfigured` ones."""
    wrong_role: Counter[str] = dataclasses.field(default_factory=Counter)
    """Measurements whose kind is not that of their configured sensor, by `kind from id`."""
    tracks_messages: int = 0
    alerts: int = 0
    cycles: int = 0
    wall_s: float = 0.0
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    """Measurements fusion could not use, by reason (health's `fusion.dropped`)."""
    stale: Counter[str] = dataclasses.field(default_factory=Counter)
    """`dropped["stale"]` by sensor, where any were (`late.StaleScans`)."""
    ahead: Counter[str] = dataclasses.field(default_factory=Counter)
    """Of `dropped["captured_after_now"]`, those stamped after the time, by sensor (not those a
    clock step dropped from the reorder window)."""
    outside_coverage: int = 0
    """Radar detections beyond their radar's configured coverage (fused; health's too)."""
    plot_times: dict[str, FrameRuns] = dataclasses.field(default_factory=dict)
    """Per radar that looks at its whole coverage at once, the frames its plots carried (a run of
    stamps counts once: `frame_stamps`, as fusion took them)."""
    frame_rates_hz: dict[str, float] = dataclasses.field(default_factory=dict)
    """The configured `rate_hz` of the radars whose scans share one time (not `sweeps`)."""
    learnt: dict[str, tuple[float, float, bool, float]] = dataclasses.field(default_factory=dict)
    """Per radar that scanned: the detection probability and false alarms per scan fusion learnt
    from its scans (all its detections no established track gated, wherever they fell; Pd NaN
    when no track taught it: the configured one stands), whether it sweeps, and the false alarms
    per scan it was configured with."""
    fixtures: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per radar: the places its plots recurred at long enough to count as site clutter
    (`fusion.learn_fixtures_after_s`; health's `fusion.fixtures_learnt`)."""
    clutter_spots: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per radar: the places that gave several plots a scan in the last minutes and are priced as
    clutter at the end (`fusion.local_clutter`; health's `fusion.clutter_spots`)."""
    clutter_profiles: dict[str, ProfileSummary] = dataclasses.field(default_factory=dict)
    """Per radar: where its false alarms fell in range and elevation (`fusion.clutter_profile`)."""
    range_rate_contradicted: dict[str, tuple[int, float]] = dataclasses.field(default_factory=dict)
    """Per radar with range-rate and no `unambiguous_range_rate_mps`: the tracks whose range moved
    at a speed its range-rate contradicted, and the median disagreement when each was told
    (`alias_evidence`; health's `fusion.range_rate_contradicted`)."""


SPARSE_STAMPS = 100.0
"""A radar whose capture times (`SPARSE_STAMPS_LEAST` of them at least) never come within this
many of its periods of each other stamps in another unit than seconds (milliseconds: a thousand)
or has a `rate_hz` far too high. (Not the mean gap: a log that holds only a radar's scans with
plots spaces them so too, but its gaps include short ones.)"""
SPARSE_STAMPS_LEAST = 20


def sparse_stamps(times: FrameRuns, rate_hz: float) -> bool:
    """Whether a radar's capture times so far are `SPARSE_STAMPS` periods apart, every one."""
    return times.frames >= SPARSE_STAMPS_LEAST and times.least_step_s * rate_hz >= SPARSE_STAMPS


class Tracking:
    """The command's loop without its I/O: lines in, JSON lines to `out`, malformed lines to
    `report(number, rejected)`, and `note(text)` as soon as the capture times of a radar look to be
    in another unit than seconds (`sparse_stamps`: fusion of such a log can take long, and the
    summary comes at its end)."""

    def __init__(
        self,
        config: Config,
        out: IO[str] | None,
        report: Callable[[int, Rejected], None] | None = None,
        note: Callable[[str], None] | None = None,
    ) -> None:
        setup = core_setup(config)
        self.core = NodeCore(setup)
        self.roles = {s.sensor_id: type(s) for s in setup.fusion.sensors}
        self.output = StepLines(config.node.id, SESSION, out)
        self.out = out
        self.report, self.note = report, note
        self._noted: set[str] = set()
        self.grid = ArrivalGrid(idle=self.core.idle)
        self.stats = TrackStats()
        self.setup_radars = [s for s in setup.fusion.sensors if isinstance(s, RadarSensor)]
        self.stats.configured = sorted(self.roles)
        self.stats.frame_rates_hz = {s.sensor_id: s.scan_rate_hz for s in self.setup_radars if not s.sweeps}

    def _note_units(self, sensor_id: str) -> None:
        times = self.core.frame_stamps.radars.get(sensor_id)  # (`stats.plot_times` at the end)
        rate_hz = self.stats.frame_rates_hz.get(sensor_id)
        if times is not None and rate_hz and self.note is not None and sparse_stamps(times, rate_hz):
            self._noted.add(sensor_id)
            self.note(
                f"radar {sensor_id!r}: {times.frames} capture times so far, never two within "
                f"{times.least_step_s:.3g} s for rate_hz = {rate_hz:g}: in milliseconds? (the summary "
                "says more)"
            )

    def _step(self, cycles: Iterator[Cycle]) -> float | None:
        """Run the cycles; the time of the last one (None: there was none)."""
        t = None
        for t, batch in cycles:
            self.output.write(self.core.step(t, batch))
            self.stats.cycles += 1
        return t

    def run(self, lines: Iterable[str | bytes]) -> TrackStats:
        started = time.perf_counter()
        stats, roles, grid = self.stats, self.roles, self.grid
        number = 0
        for number, line in enumerate(lines, start=1):
            m = parse_line(line)
            if m is None:
                continue
            if isinstance(m, Rejected):
                stats.malformed[m.reason] += 1
                if self.report is not None:
                    self.report(number, m)
                continue
            if isinstance(m, UnknownKind):
                stats.unknown_kinds[m.kind[:64]] += 1
                continue
            role = roles.get(m.sensor_id)
            if role is None:
                stats.unconfigured[m.sensor_id[:64]] += 1
                continue
            if not issubclass(role, ROLE[type(m)]):
                stats.wrong_role[f"{type(m).__name__} from {m.sensor_id}"] += 1
                continue
            stats.measurements += 1
            stats.empty_scans += isinstance(m, EmptyRadarScan)
            self._step(grid.add(m))
            if self.note is not None and m.sensor_id not in self._noted:
                self._note_units(m.sensor_id)
        stats.lines = number
        end = self._step(grid.end())
        if end is not None:
            # The end of input, as replay's: fuse what the reorder window still holds.
            self.output.write(self.core.finish(end))
        if self.out is not None:
            self.out.flush()
        stats.tracks_messages, stats.alerts = self.output.tracks_messages, self.output.alerts
        stats.dropped = self.core.engine.dropped()
        stats.stale = +self.core.engine.counters.stale_by_sensor  # (+: without the zero counts)
        stats.ahead = +self.core.engine.counters.ahead_by_sensor
        stats.plot_times = {i: runs for i, runs in self.core.frame_stamps.radars.items() if runs.frames}
        stats.outside_coverage = self.core.engine.counters.outside_coverage
        tracker = self.core.engine.tracker
        for s in self.setup_radars:
            bit = tracker.sensor_bits.get(s.sensor_id)
            if bit is not None and math.isfinite(tracker.stats.last_t[bit]):
                specified = float(tracker.stats.specified_false_alarms[bit])
                pd = tracker.stats.pd(bit) if tracker.stats.pd_learnt(bit) else math.nan
                learnt = (pd, float(tracker.stats.all_false_alarms[bit]), s.sweeps, specified)
                stats.learnt[s.sensor_id] = learnt
                stats.fixtures[s.sensor_id] = tracker.fixtures.learnt(bit)
                stats.clutter_spots[s.sensor_id] = tracker.local_clutter.spots(
                    self.core.now, tracker.stats, bit
                )
                profile = tracker.profile.summary(bit)
                if profile is not None:
                    stats.clutter_profiles[s.sensor_id] = profile
                stats.range_rate_contradicted[s.sensor_id] = tracker.alias.contradicted(bit)
        stats.wall_s = time.perf_counter() - started
        return stats
