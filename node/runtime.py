"""The running node: driver threads → one queue → fusion → publisher, with health beside the data.

Each sensor has its own thread so a slow or vanished port never stalls the others; fusion runs on
one thread so the tracker needs no locks. Every loop records a heartbeat: the systemd watchdog is
fed only while they all make progress.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cuas_node.assembly import core_setup, zone_specs
from cuas_node.commands import AlertAckArgs, Command, Result, SetLogLevelArgs, ZoneUpdateArgs
from cuas_node.config import Config
from cuas_node.config_sections import ZoneSection
from cuas_node.core.step import NodeCore, StepResult
from cuas_node.drivers.driver import SensorDriver
from cuas_node.drivers.supervisor import DriverSupervisor, internal_error_total
from cuas_node.gpio import GpioController, NodeStatus, status_for
from cuas_node.health_report import RateSampler, fusion_entry, sensor_entry, sensor_state
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.measurement import AnyMeasurement, GpsFix
from cuas_node.kernel.reports import AlertAck, AlertEvent, GeoPoint, NodePosition, TrackReport
from cuas_node.outputs.outputs import Outputs
from cuas_node.publish import wire
from cuas_node.system_health import SystemMonitor

log = logging.getLogger(__name__)

_QUEUE_CAPACITY = 20000
_BATCH_MAX = 2000
_GPS_FIX_MAX_AGE_S = 5.0  # a receiver that reported no valid fix for this long has lost it
_LED_UPDATE_S = 0.25


class TrackSink(Protocol):
    """What the runtime needs from a publisher (MQTT, or stdout for replay): typed reports in,
    the wire format is the sink's business (`cuas_node.publish.wire`)."""

    def start(self) -> None: ...
    def update_info(self, position: NodePosition | None, origin: GeoPoint | None) -> None: ...
    def publish_tracks(self, t: float, tracks: Sequence[TrackReport]) -> None: ...
    def publish_health(self, payload: dict[str, Any]) -> None: ...
    def publish_alert(self, event: AlertEvent) -> None: ...
    def stop(self) -> None: ...

    @property
    def connected(self) -> bool: ...


class Runtime:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        drivers: list[SensorDriver],
        sink: TrackSink,
        session: int,
        gpio: GpioController | None = None,
        system: SystemMonitor | None = None,
        outputs: Outputs | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sink = sink
        # The standard outputs (CoT, ...) take the same reports beside the sink, each on its own
        # thread behind a bounded queue (cuas_node.outputs): a dead peer never stalls this thread.
        self.outputs = outputs or Outputs()
        self.stop_event = threading.Event()
        self.queue: queue.Queue[AnyMeasurement] = queue.Queue(maxsize=_QUEUE_CAPACITY)
        # One supervisor thread per sensor (cuas_node.drivers.supervisor): faults are caught, counted
        # and retried there, so a driver bug costs one sensor for a back-off, never the node.
        self._rates = [RateSampler() for _ in drivers]
        share = _QUEUE_CAPACITY // max(len(drivers), 1)  # each sensor its own part of the queue
        self.loops = [DriverSupervisor(d, self.queue, self.stop_event, share=share) for d in drivers]
        self._loop_of = {loop.driver.sensor_id: loop for loop in self.loops}
        self.session = session
        self.core = NodeCore(core_setup(config))
        self.fusion_heartbeat = time.monotonic()
        self.started_at = clock.now()
        self._started_mono = clock.monotonic()  # uptime: the wall clock may step (NTP) while running
        self._last_health = clock.now()
        self.ready = threading.Event()
        self.gpio = gpio
        self.system = system or SystemMonitor(config.node.state_dir, getattr(config.node, "spool_dir", None))
        self._gps_sensor = next((d.sensor_id for d in drivers if d.kind == "nmea"), None)
        self._gps_last: GpsFix | None = None
        self._last_led = -1e18
        # Commands (node/commands.py) arrive on the MQTT thread and run here, on the fusion thread.
        self._commands: queue.SimpleQueue[tuple[Command, Callable[[Result], None]]] = queue.SimpleQueue()
        self._health_now = False
        self.calibration: Callable[[Command], Result] | None = None  # set by the calibration feature
        self.failure: str | None = None  # why the node stopped by itself (exit non-zero)
        # Extra blocks of the health message from outputs beside the publisher (`web`: the live view):
        # name -> a cheap, thread-safe read of that output's counters, called once per health message.
        self.health_blocks: dict[str, Callable[[], dict[str, Any]]] = {}
        # Told the new zones when a `zone_update` command replaces them (the live view redraws).
        self.zone_listeners: list[Callable[[Sequence[ZoneSection]], None]] = []

    def heartbeats(self) -> list[tuple[str, float]]:
        """(name, monotonic stamp) of every loop the systemd watchdog guards."""
        beats = [("fusion", self.fusion_heartbeat)]
        beats += [(f"sensor {loop.driver.sensor_id}", loop.stats.heartbeat) for loop in self.loops]
        return beats

    def request_stop(self) -> None:
        self.stop_event.set()

    def run(self, until: threading.Event | None = None, on_ready: Callable[[], None] | None = None) -> None:
        """Run until `request_stop()` (signals) or until `until` is set (end of a scenario).

        `on_ready` is called once the sensor loops and fusion run (the simulator starts its clock
        there; the systemd notifier sends READY=1 there)."""
        attach = getattr(self.sink, "set_command_handler", None)
        if attach is not None:
            attach(self)
        self.sink.start()
        self.outputs.start()
        self.system.start()
        if self.gpio is not None:
            self.gpio.start()
        self.sink.update_info(self.core.position(), self.core.origin())
        self.outputs.position(self.core.position())
        for loop in self.loops:
            loop.thread.start()
        self.ready.set()
        if on_ready is not None:
            on_ready()
        log.info("node %s running with %d sensor(s)", self.config.node.id, len(self.loops))
        try:
            while not self.stop_event.is_set() and not (until is not None and until.is_set()):
                self._cycle()
                failed = getattr(self.sink, "failed", None)
                if failed:  # a publisher that cannot recover: exit so that systemd restarts the node
                    log.critical("publisher failed (%s); stopping so that systemd restarts the node", failed)
                    self.failure = str(failed)
                    break
        finally:
            self.stop_event.set()
            for loop in self.loops:
                loop.thread.join(timeout=1.0)
            self._finish_on_stop()
            if self.gpio is not None:
                self.gpio.stop()
            self.system.stop()
            self.outputs.stop()
            self.sink.stop()
            log.info("node %s stopped", self.config.node.id)

    def _cycle(self) -> None:
        """One turn of the fusion thread: what the queue holds (waiting up to 50 ms) → `cycle`."""
        self.fusion_heartbeat = time.monotonic()
        batch: list[AnyMeasurement] = []
        try:
            batch.append(self.queue.get(timeout=0.05))
            while len(batch) < _BATCH_MAX:
                batch.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        for m in batch:
            loop = self._loop_of.get(m.sensor_id)
            if loop is not None:
                loop.stats.taken += 1
        self.cycle(self.clock.now(), batch)

    def cycle(self, now: float, batch: Sequence[AnyMeasurement]) -> StepResult:
        """One fusion cycle at `now`: pending commands, the core step (`NodeCore.step`, the same
        one `replay` and `eval` run), then its reports to the sink, the alert output, LED, health."""
        for m in batch:
            if isinstance(m, GpsFix) and m.sensor_id == self._gps_sensor:
                self._gps_last = m
        self._run_commands(now)
        result = self.core.step(now, batch)
        self._deliver(result)
        tamper_event = False
        if self.gpio is not None:
            tamper_event = self.gpio.take_event()
            mono = time.monotonic()
            if mono - self._last_led >= _LED_UPDATE_S:
                self._last_led = mono
                self.gpio.set_status(self.led_status(now))
        since = now - self._last_health
        # A negative `since` is the wall clock stepped back: health goes out now (and then on the
        # new clock) rather than once the clock has caught up; its rates over the configured interval.
        if tamper_event or self._health_now or since < 0.0 or since >= self.config.mqtt.health_interval_s:
            self._health_now = False
            interval = since if since >= 0.0 else self.config.mqtt.health_interval_s
            self.sink.publish_health(self.health(now, interval))
            self._last_health = now
        return result

    def finish(self, now: float, batch: Sequence[AnyMeasurement] = ()) -> StepResult:
        """The end of input (a clean stop, the end of a replay): fuse `batch` and what the reorder
        window still holds, and publish whatever changed without waiting for the rate limit."""
        result = self.core.finish(now, batch)
        self._deliver(result)
        return result

    def _finish_on_stop(self) -> None:
        """A clean stop publishes what the sensors had already delivered (the queue and the
        reorder window), then the deletion of every live track, before `offline`."""
        batch: list[AnyMeasurement] = []
        while True:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        try:
            now = self.clock.now()
            self.finish(now, batch)
            self._deliver(self.core.retire(now))
        except Exception:  # stopping must go on: the publisher still says goodbye
            log.exception("could not publish the final tracks on stop")

    def _deliver(self, result: StepResult) -> None:
        if result.position_changed:
            self.sink.update_info(result.position, result.origin)
            self.outputs.position(result.position)
        if result.tracks is None:
            return
        self.sink.publish_tracks(result.t, result.tracks)
        self.outputs.tracks(result.t, result.tracks)
        for event in result.alerts:
            self.sink.publish_alert(event)
        if self.gpio is not None and self.core.alerts is not None:
            self.gpio.set_alert(self.core.critical_alert_active, "zones")

    # -- commands (see node/commands.py; authorised and validated before they get here) ---------

    def handle_command(self, command: Command, reply: Callable[[Result], None]) -> None:
        """Queue a command for the fusion thread (the tracker and zones have no locks)."""
        self._commands.put((command, reply))

    def _run_commands(self, now: float) -> None:
        while True:
            try:
                command, reply = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                reply(self._execute(command, now))
            except Exception as exc:  # a bad command must never stop fusion
                log.exception("command %s failed", command.name)
                reply(Result("error", f"internal error: {type(exc).__name__}"))

    def _execute(self, command: Command, now: float) -> Result:
        args = command.args
        if command.name == "status":
            self._health_now = True  # published at the end of this cycle
            return Result("ok", "health published")
        if isinstance(args, SetLogLevelArgs):
            logging.getLogger(args.logger or "").setLevel(args.level)
            log.warning(
                "log level of %s set to %s by %s", args.logger or "root", args.level, command.identity
            )
            return Result("ok", result={"logger": args.logger or "root", "level": args.level})
        if isinstance(args, ZoneUpdateArgs):
            self.core.replace_zones(zone_specs(args.zones))
            log.warning("zones replaced by %s: %s", command.identity, [z.id for z in args.zones] or "none")
            for listener in self.zone_listeners:
                try:
                    listener(args.zones)
                except Exception:  # a view of the zones must never cost the command
                    log.exception("zone listener failed")
            return Result("ok", result={"zones": [z.id for z in args.zones]})
        if isinstance(args, AlertAckArgs):
            active = {wire.alert_id(self.session, key): key for key in self.core.active_alerts()}
            key = active.get(args.alert_id)
            if key is None:
                return Result("error", f"no active alert {args.alert_id!r}")
            self.core.acknowledge(key, AlertAck(by=args.by or command.identity, t=now, note=args.note or ""))
            return Result("ok", result={"alert_id": args.alert_id})
        if command.name == "calibrate":
            if self.calibration is None:
                return Result("not_available", "calibration is not available in this version")
            return self.calibration(command)
        return Result("error", f"command {command.name!r} is not handled by this node")

    def led_status(self, now: float) -> NodeStatus:
        stale, ahead = self.core.stale_sensors(), self.core.ahead_sensors()
        states = [
            str(sensor_state(loop.driver.health(), now, stale.get(key), ahead.get(key))[0])
            for loop in self.loops
            for key in [loop.driver.sensor_id]
        ]
        return status_for(self.ready.is_set(), self.sink.connected, states)

    def _gps_health(self) -> dict[str, Any] | None:
        if self._gps_sensor is None:
            return None
        out: dict[str, Any] = {"sensor": self._gps_sensor, "fix": False}
        fix = self._gps_last
        if fix is not None:
            age = max(0.0, self.clock.monotonic() - fix.t_receive)
            out["fix"] = fix.quality > 0 and age <= _GPS_FIX_MAX_AGE_S
            out["quality"] = fix.quality
            out["fix_age_s"] = round(age, 1)
            if fix.num_sats is not None:
                out["satellites"] = fix.num_sats
            if fix.hdop is not None:
                out["hdop"] = fix.hdop
        return out

    def health(self, now: float, interval: float) -> dict[str, Any]:
        fusion = self.core.status()
        sensors = [
            sensor_entry(
                loop.driver.health(),
                loop.stats.errors,
                loop.stats.dropped,
                rates,
                now,
                interval,
                fusion.stale_sensors.get(loop.driver.sensor_id),
                fusion.ahead_sensors.get(loop.driver.sensor_id),
            )
            for loop, rates in zip(self.loops, self._rates, strict=True)
        ]
        payload: dict[str, Any] = {
            "t": round(now, 3),
            "uptime_s": round(max(self.clock.monotonic() - self._started_mono, 0.0), 1),
            "broker": "connected" if self.sink.connected else "disconnected",
            "sensors": sensors,
            "fusion": fusion_entry(fusion, self.queue.qsize()),
        }
        payload["errors"] = {"internal": internal_error_total(self.loops)}
        system = self.system.snapshot()
        if system:
            payload["system"] = system
        gps = self._gps_health()
        if gps is not None:
            payload["gps"] = gps
        if self.gpio is not None:
            payload["gpio"] = self.gpio.health()
        for name, block in self.health_blocks.items():
            try:
                payload[name] = block()
            except Exception:  # an output's counters must never cost the health message
                log.exception("health block %s failed", name)
        outputs = self.outputs.health()
        if outputs:
            payload["outputs"] = outputs
        return payload
