"""Run a scenario through the whole pipeline in virtual time, as fast as the CPU allows.

The point is to score the code that runs on the Pi, not a shortcut around it: the simulated sensors
produce the same wire bytes as in `cuas-node sim` (the emitters of `drivers.sim.runner.Simulation`
are reused as they are), the real drivers built by `driver_factory.build_driver` parse them, and the
node's own core step (`core.step.NodeCore`, built from the same node config) fuses them, zone
alerts and rate limit included. Only two things differ from `sim`:
- each serial port is an in-memory pipe instead of a pty (no threads, no lost bytes, no waits);
- time is a manual clock stepped through the sensors' event times in order, so a run is exactly
  reproducible from its seed and a minute of scenario takes about a second.

Sensors whose driver paces itself (the FPV scanner sleeps `settle_s` per channel) get their own
manual clock that the loop keeps in step: a read starts at the current event time, the driver's
sleeps move its clock on, and its measurements are delivered when its clock says they are done.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from cuas_node.assembly import core_setup
from cuas_node.config import FpvRx5808Sensor, build_config, deep_merge
from cuas_node.core.step import NodeCore
from cuas_node.driver_factory import UnsupportedSensor, build_driver
from cuas_node.drivers.driver import SensorDriver
from cuas_node.drivers.sim.runner import Simulation
from cuas_node.drivers.sim.scenario import Scenario, SimFpvSpec, SimRadarSpec
from cuas_node.evaluation.metrics import DEFAULT_GATE_M, Step, TruthFrame, track_frame
from cuas_node.evaluation.published import PublishedScore, score_published
from cuas_node.kernel.clock import ManualClock, ScaledClock
from cuas_node.kernel.measurement import AnyMeasurement
from cuas_node.kernel.pose import cartesian_to_spherical
from cuas_node.kernel.reports import TrackReport

DEFAULT_EPOCH = 1_700_000_000.0
"""Scenario start when the scenario sets no `start_utc`: fixed, so runs are reproducible."""

_SENSOR_FIRST, _TRUTH_LAST = 0, 1  # at equal times a sensor event precedes the truth sample


class MemoryPipe:
    """One serial line in memory. The simulator side has `PtyPort`'s interface (`write`, `read`,
    `close`, `path`); `transport()` gives the node side, which a driver reads exactly like a port."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.bytes_written = 0
        self.bytes_dropped = 0
        self._to_node = bytearray()
        self._to_device = bytearray()

    def write(self, data: bytes, max_wait_s: float = 0.0) -> None:
        self._to_node += data
        self.bytes_written += len(data)

    def read(self, max_bytes: int = 4096) -> bytes:
        out = bytes(self._to_device[:max_bytes])
        del self._to_device[:max_bytes]
        return out

    def close(self) -> None:
        self._to_node.clear()

    @property
    def pending(self) -> int:
        return len(self._to_node)

    def transport(self) -> MemoryTransport:
        return MemoryTransport(self)


class MemoryTransport:
    """The node side of a `MemoryPipe` (a `drivers.transport.Transport`). `read` never waits:
    the evaluation loop only reads after the simulator has written."""

    def __init__(self, pipe: MemoryPipe) -> None:
        self.pipe = pipe
        self._open = False

    def open(self) -> None:
        self._open = True

    def read(self, max_bytes: int = 4096) -> bytes:
        buf = self.pipe._to_node
        out = bytes(buf[:max_bytes])
        del buf[:max_bytes]
        return out

    def write(self, data: bytes) -> None:
        self.pipe._to_device += data

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open


class _InMemorySimulation(Simulation):
    """`Simulation` with its ptys swapped for in-memory pipes and its clock for a virtual one, so
    its node config, FPV hardware models and emitters are used exactly as `cuas-node sim` uses them."""

    def __init__(self, scenario: Scenario, clock: ManualClock, seed: int) -> None:
        super().__init__(scenario, cast(ScaledClock, clock), seed=seed)
        for port in [*self.ports.values(), *getattr(self, "cli_ports", {}).values()]:
            port.close()
        # The radar boards are taken as configured and streaming: the CLI handshake
        # (drivers/radar/ti_cli.py) waits on real serial timeouts, so eval leaves it out (no `config_port`).
        for board in getattr(self, "boards", {}).values():
            board.streaming = True
        self.pipes = {sid: MemoryPipe(f"/dev/null/eval-{sid}") for sid in self.ports}
        self.ports = cast(Any, self.pipes)

    def in_memory_emitter(self, index: int, spec: Any) -> Callable[[float], None] | None:
        """The emitter `Simulation.start` would run for this sensor, writing into its pipe; None
        for a kind whose simulator cannot run here (e.g. an optional dependency is missing)."""
        try:
            return self.emitter(index, spec, cast(Any, self.pipes[spec.id]))
        except ImportError:
            return None


@dataclass
class RunResult:
    """One seed's run: the steps to score, the tracker's CPU time per radar scan (seconds), and
    sensors that could not take part (no simulator or no driver in this version)."""

    steps: list[Step]
    cpu_per_scan_s: list[float]
    skipped_sensors: list[str] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    sensor_errors: dict[str, str] = field(default_factory=dict)
    published: PublishedScore = field(default_factory=PublishedScore)


class _RadarView:
    """What the scenario's radars can see, and how well: which targets count as covered (time to
    first track counts from there) and how far a track may lie from its target and still be its
    track (the matching radius of the continuity metrics)."""

    def __init__(self, scenario: Scenario) -> None:
        radars = [s for s in scenario.sensors if isinstance(s, SimRadarSpec)]
        self.poses = [(s.mount.pose(), s) for s in radars]
        self.largest_radius_m = max(scenario.gospa_c_m, DEFAULT_GATE_M)

    def _looks(self, enu: np.ndarray) -> Iterator[tuple[SimRadarSpec, np.ndarray, np.ndarray]]:
        """Per radar: its spec, each point's range from it, and whether the point is inside its
        range and field of view."""
        for pose, spec in self.poses:
            r, az, el = cartesian_to_spherical(pose.enu_to_sensor(enu))
            sees = (
                (r <= spec.max_range_m)
                & (np.abs(az) <= math.radians(spec.fov_az_deg))
                & (np.abs(el) <= math.radians(spec.fov_el_deg))
            )
            yield spec, r, sees

    def covered(self, enu: np.ndarray) -> np.ndarray:
        """Inside range and field of view of any radar; without a radar every existing target
        counts as covered (e.g. acoustic-only)."""
        if not self.poses:
            return np.ones(enu.shape[0], dtype=bool)
        out = np.zeros(enu.shape[0], dtype=bool)
        for _, _, sees in self._looks(enu):
            out |= sees
        return out

    def match_radius(self, enu: np.ndarray) -> np.ndarray:
        """Per target: five times the position 1σ there of the best radar that covers it (the
        larger of its range σ and the range times its larger angle σ), never below
        `DEFAULT_GATE_M` (the targets' own size and spacing; a TI board's 2° reaches it at 143 m)
        nor above the GOSPA cut-off (or 25 m if that is smaller); `DEFAULT_GATE_M` where no radar
        covers the target.
        A fixed radius would call a radar at 2 km with a 1° beam (35 m across it) a source of
        false tracks and ID switches."""
        best = np.full(enu.shape[0], np.inf)
        for spec, r, sees in self._looks(enu):
            across = r * math.radians(max(spec.az_sigma_deg, spec.el_sigma_deg))
            best = np.where(sees, np.minimum(best, np.maximum(spec.range_sigma_m, across)), best)
        radius = np.where(np.isfinite(best), 5.0 * best, DEFAULT_GATE_M)
        return np.asarray(np.clip(radius, DEFAULT_GATE_M, self.largest_radius_m), dtype=np.float64)


def run_scenario(scenario: Scenario, seed: int, config_overrides: dict[str, Any] | None = None) -> RunResult:
    """Run one seed of `scenario` through drivers and fusion; see the module docstring."""
    epoch = scenario.start_utc if scenario.start_utc is not None else DEFAULT_EPOCH
    clock = ManualClock(epoch)
    sim = _InMemorySimulation(scenario, clock, seed)
    data = sim.node_config()
    for entry in data["sensors"]:
        entry.pop("config_port", None)  # see _InMemorySimulation: boards come up streaming
    if config_overrides:
        data = deep_merge(data, config_overrides)
    config = build_config(data, f"scenario {scenario.name}")
    core = NodeCore(core_setup(config))
    skipped: list[str] = []

    # FPV scanners: register-level models on per-scanner clocks (see the module docstring).
    fpv_ids = [s.id for s in scenario.sensors if isinstance(s, SimFpvSpec)]
    fpv_clocks: dict[str, ManualClock] = {}
    hardware: dict[str, tuple[Any, Any]] = {}
    if fpv_ids:
        from cuas_node.driver_factory import fpv_receivers

        receivers = {s.id: fpv_receivers(s) for s in config.sensors if isinstance(s, FpvRx5808Sensor)}
        for sid in fpv_ids:
            fpv_clocks[sid] = ManualClock(epoch)
            sim.clock = cast(ScaledClock, fpv_clocks[sid])
            sim.hardware = {}
            sim.build_hardware({k: v for k, v in receivers.items()})
            hardware[sid] = sim.hardware[sid]
        sim.clock = cast(ScaledClock, clock)

    drivers: dict[str, SensorDriver] = {}
    for sensor in config.sensors:
        sensor_clock = fpv_clocks.get(sensor.id, clock)
        if sensor.kind == "radar":
            skipped.append(sensor.id)  # no simulated twin: it takes plots (`cuas-node track`)
            continue
        try:
            driver = build_driver(sensor, sensor_clock, hardware)
        except (UnsupportedSensor, ImportError):
            skipped.append(sensor.id)
            continue
        if sensor.id in sim.pipes:
            cast(Any, driver).transport = sim.pipes[sensor.id].transport()
        driver.open()
        drivers[sensor.id] = driver

    # Event queue: (time, order, sequence, sensor id or "" for truth).
    events: list[tuple[float, int, int, str]] = []
    seq = 0
    emitters: dict[str, Callable[[float], None]] = {}
    for index, spec in enumerate(scenario.sensors):
        if spec.id not in drivers:
            continue
        if isinstance(spec, SimFpvSpec):
            heapq.heappush(events, (0.0, _SENSOR_FIRST, seq, spec.id))
            seq += 1
            continue
        emit = sim.in_memory_emitter(index, spec)
        if emit is None:
            skipped.append(spec.id)
            drivers.pop(spec.id).close()
            continue
        emitters[spec.id] = emit
        n = math.floor(scenario.duration_s * spec.rate_hz + 1e-9)
        for k in range(n + 1):
            events.append((k / spec.rate_hz, _SENSOR_FIRST, seq, spec.id))
            seq += 1
    n_steps = math.floor(scenario.duration_s / scenario.step_s + 1e-9)
    for k in range(n_steps + 1):
        events.append((k * scenario.step_s, _TRUTH_LAST, seq, ""))
        seq += 1
    heapq.heapify(events)

    radars = _RadarView(scenario)
    steps: list[Step] = []
    cpu: list[float] = []
    fpv_pending: dict[str, list[AnyMeasurement]] = {sid: [] for sid in fpv_clocks}
    failed: dict[str, str] = {}

    alerts = 0
    messages: list[tuple[TrackReport, ...]] = []

    def fuse(batch: list[AnyMeasurement]) -> None:
        """One core step, exactly as the node runs it; CPU time is charged to the scans it fused."""
        nonlocal alerts
        scans_before = core.counters.scans
        started = time.process_time()
        result = core.step(clock.now(), batch)
        elapsed = time.process_time() - started
        alerts += len(result.alerts)
        if result.tracks is not None:
            messages.append(result.tracks)
        scans = core.counters.scans - scans_before
        if scans:
            cpu.extend([elapsed / scans] * scans)

    while events:
        t, order, _, sid = heapq.heappop(events)
        if t > scenario.duration_s + 1e-9:
            continue
        clock.set(t)
        if order == _TRUTH_LAST:
            fuse([])
            state = sim.world.state(t)
            truth = TruthFrame(
                ids=list(state.ids),
                kinds=list(state.kinds),
                enu=state.enu,
                covered=radars.covered(state.enu),
                match_m=radars.match_radius(state.enu),
            )
            tracks = track_frame(core.tracks_now(), clock.now())
            steps.append(Step(t=round(t, 6), truth=truth, tracks=tracks))
            continue
        if sid in failed:
            continue
        driver = drivers[sid]
        if sid in fpv_clocks:
            batch, fpv_pending[sid] = fpv_pending[sid], []
            fpv_clock = fpv_clocks[sid]
            fpv_clock.set(max(fpv_clock.t, t))
            fpv_pending[sid] = _read_or_fail(driver, failed)
            heapq.heappush(events, (max(fpv_clock.t, t + 1e-6), _SENSOR_FIRST, seq, sid))
            seq += 1
        else:
            emitters[sid](t)
            batch = []
            pipe = sim.pipes[sid]
            while pipe.pending and sid not in failed:
                batch.extend(_read_or_fail(driver, failed))
            pipe.close()  # what a failed driver left unread
        fuse(batch)

    for driver in drivers.values():
        driver.close()
    counters = {
        "measurements": core.counters.measurements,
        "radar_scans": core.counters.scans,
        "by_kind": dict(sorted(core.counters.by_kind.items())),
        "alerts": alerts,
    }
    return RunResult(
        steps=steps,
        cpu_per_scan_s=cpu,
        skipped_sensors=skipped,
        counters=counters,
        sensor_errors=failed,
        published=score_published(messages, core.engine.tracker.ground),
    )


def _read_or_fail(driver: SensorDriver, failed: dict[str, str]) -> list[AnyMeasurement]:
    """A driver that raises is out for the rest of the run, as a sensor marked `down` is in the
    node; the error is reported instead of aborting the whole evaluation."""
    try:
        return driver.read()
    except Exception as exc:  # any driver failure is reported, not fatal
        failed[driver.sensor_id] = f"{type(exc).__name__}: {exc}"
        return []
